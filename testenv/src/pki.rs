//! Generates the control plane's certificates and keys: one CA for serving and
//! client certificates, the API server's serving certificate, the admin client
//! certificate and the service-account signing key pair.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

use crate::TestEnvError;

/// Paths of the generated PEM files.
#[derive(Debug, Clone)]
pub(crate) struct PkiFiles {
    pub ca_cert: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub service_account_public_key: PathBuf,
    pub service_account_private_key: PathBuf,
}

/// Writes a fresh PKI into `dir` (created if missing).
pub(crate) fn generate(dir: &Path) -> Result<PkiFiles, TestEnvError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| TestEnvError::io(format!("creating {}", dir.display()), e))?;
    let files = PkiFiles {
        ca_cert: dir.join("ca.crt"),
        serving_cert: dir.join("apiserver.crt"),
        serving_key: dir.join("apiserver.key"),
        admin_cert: dir.join("admin.crt"),
        admin_key: dir.join("admin.key"),
        service_account_public_key: dir.join("sa.pub"),
        service_account_private_key: dir.join("sa.key"),
    };

    let mut ca_params = CertificateParams::default();
    ca_params.distinguished_name = name("keyrotor-testenv-ca", None);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    write(&files.ca_cert, &ca.pem())?;

    let mut serving = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    serving.distinguished_name = name("kube-apiserver", None);
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_key = KeyPair::generate()?;
    write(
        &files.serving_cert,
        &serving.signed_by(&serving_key, &ca)?.pem(),
    )?;
    write(&files.serving_key, &serving_key.serialize_pem())?;

    // system:masters bypasses RBAC, which matters while the RBAC bootstrap runs.
    let mut admin = CertificateParams::default();
    admin.distinguished_name = name("admin", Some("system:masters"));
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_key = KeyPair::generate()?;
    write(&files.admin_cert, &admin.signed_by(&admin_key, &ca)?.pem())?;
    write(&files.admin_key, &admin_key.serialize_pem())?;

    let service_account_key = KeyPair::generate()?;
    write(
        &files.service_account_public_key,
        &service_account_key.public_key_pem(),
    )?;
    write(
        &files.service_account_private_key,
        &service_account_key.serialize_pem(),
    )?;
    Ok(files)
}

fn name(common_name: &str, organization: Option<&str>) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    if let Some(organization) = organization {
        name.push(DnType::OrganizationName, organization);
    }
    name
}

fn write(path: &Path, pem: &str) -> Result<(), TestEnvError> {
    std::fs::write(path, pem)
        .map_err(|e| TestEnvError::io(format!("writing {}", path.display()), e))
}
