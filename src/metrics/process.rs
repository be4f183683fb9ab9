//! The standard `process_*` metrics (client_golang's set: CPU, memory, file
//! descriptors, threads, start time), read at scrape time. prometheus-client
//! has no process collector; `metrics-process` reads them (from /proc on
//! Linux) and this adapter encodes its snapshot.

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};

/// Encodes one snapshot of this process per scrape.
#[derive(Debug, Default)]
pub(super) struct ProcessCollector;

/// Name, help and value of each process gauge.
type ProcessGauge = (
    &'static str,
    &'static str,
    fn(&metrics_process::collector::Metrics) -> Option<u64>,
);

const PROCESS_GAUGES: [ProcessGauge; 7] = [
    (
        "process_open_fds",
        "Number of open file descriptors.",
        |m| m.open_fds,
    ),
    (
        "process_max_fds",
        "Maximum number of open file descriptors.",
        |m| m.max_fds,
    ),
    (
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        |m| m.virtual_memory_bytes,
    ),
    (
        "process_virtual_memory_max_bytes",
        "Maximum amount of virtual memory available in bytes.",
        |m| m.virtual_memory_max_bytes,
    ),
    (
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        |m| m.resident_memory_bytes,
    ),
    (
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch in seconds.",
        |m| m.start_time_seconds,
    ),
    (
        "process_threads",
        "Number of OS threads in the process.",
        |m| m.threads,
    ),
];

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = metrics_process::collector::collect();
        if let Some(cpu) = snapshot.cpu_seconds_total {
            // A counter's samples get the `_total` suffix from the encoder.
            let family = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(cpu).encode(family)?;
        }
        for (name, help, value) in PROCESS_GAUGES {
            // What the platform cannot tell is left out, as client_golang does.
            let Some(value) = value(&snapshot).and_then(|v| i64::try_from(v).ok()) else {
                continue;
            };
            let family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(family)?;
        }
        Ok(())
    }
}
