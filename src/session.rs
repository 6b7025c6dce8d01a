//! A soak session: the database writer, the backends' adapters, and one memory sampler and
//! evidence collector per backend, started together and stopped together. The daemon, `once`
//! and `demo` each run their workloads inside one.

use crate::backend::Adapters;
use crate::config::Config;
use crate::probe::evidence::Collector;
use crate::probe::runner::Target;
use crate::probe::sampler::{Sampler, SamplerHandle};
use crate::shutdown::Shutdown;
use crate::store::rows::Event;
use crate::store::{self, StoreError, Writer, WriterHandle};
use crate::time::now_ms;
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct Session {
    pub config: Config,
    pub shutdown: Shutdown,
    writer: Writer,
    samplers: BTreeMap<String, Sampler>,
    collectors: BTreeMap<String, Arc<Collector>>,
    adapters: Arc<Adapters>,
    machine: Arc<crate::probe::machine::Machine>,
    /// This machine, described once when the session opened (the `host` table).
    host: store::host::Host,
}

impl Session {
    /// Opens the database (recovering what a dead soakd left in flight) and starts sampling
    /// every configured backend. Must be called inside a tokio runtime.
    pub fn open(config: Config, shutdown: Shutdown) -> Result<Session, StoreError> {
        let conn = store::open(&config.db)?;
        let recovered = store::recover_interrupted(&conn, &config.db)?;
        if recovered.runs > 0 {
            tracing::warn!(
                runs = recovered.runs,
                requests = recovered.requests,
                "an earlier soakd stopped mid-run; its unfinished requests are recorded as `interrupted`"
            );
        }
        let host = crate::probe::host::this_machine();
        let machine_seen = store::host::seen(&conn, &host, now_ms());
        if let Err(e) = machine_seen {
            tracing::warn!("could not record this machine in the log's host table: {e}");
        }
        let writer = Writer::start(conn, config.db.clone());
        let collectors: BTreeMap<String, Arc<Collector>> =
            config.backends.iter().map(|b| (b.name.clone(), Arc::new(Collector::new(b)))).collect();
        let samplers = config
            .backends
            .iter()
            .map(|b| {
                let s = Sampler::start(
                    b.name.clone(),
                    b.process.clone(),
                    config.sampler.clone(),
                    writer.handle(),
                    collectors[&b.name].clone(),
                    config.db.clone(),
                    shutdown.clone(),
                );
                (b.name.clone(), s)
            })
            .collect();
        let machine = Arc::new(crate::probe::machine::Machine::for_log(&config.db));
        Ok(Session { config, shutdown, writer, samplers, collectors, adapters: Arc::default(), machine, host })
    }

    /// What a run at `backend` works with.
    pub fn target(&self, backend: &str) -> Target {
        Target {
            writer: self.writer(),
            machine: self.machine.clone(),
            sampler: self.sampler(backend),
            adapters: self.adapters.clone(),
            evidence: self.collectors.get(backend).expect("a collector for every configured backend").clone(),
        }
    }

    pub fn writer(&self) -> WriterHandle {
        self.writer.handle()
    }

    pub fn sampler(&self, backend: &str) -> SamplerHandle {
        self.samplers.get(backend).expect("a sampler for every configured backend").handle()
    }

    /// Records a daemon-level event.
    pub fn event(&self, kind: crate::measure::EventKind, detail: serde_json::Value) {
        self.writer.handle().event(Event { backend: None, kind, at: now_ms(), detail });
    }

    /// Stops the samplers and commits everything recorded.
    pub async fn close(self) -> store::writer::WriterStats {
        self.shutdown.stop();
        self.adapters.close().await;
        for (_, s) in self.samplers {
            s.join().await;
        }
        let (writer, db, host) = (self.writer, self.config.db.clone(), self.host);
        tokio::task::spawn_blocking(move || {
            let stats = writer.finish();
            // The machine was seen until now (a clean stop).
            if let Ok(conn) = store::open_existing(&db) {
                let _ = store::host::seen(&conn, &host, now_ms());
            }
            stats
        })
        .await
        .unwrap_or_default()
    }
}
