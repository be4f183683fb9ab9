use kube::CustomResourceExt;
fn main() {
    println!("{}", keyrotor::crd::crd_yaml().unwrap());
    let _ = keyrotor::crd::AccessKeyPolicy::crd();
}
