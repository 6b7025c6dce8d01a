//! The session's adapters: one per backend and connect timeout, built on first use and kept
//! until the session closes, so pooled connections and worker processes outlive a single run.

use super::{Backend, BackendError, connect};
use crate::config::BackendConfig;
use crate::schedule::Timeouts;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
pub struct Adapters {
    built: Mutex<HashMap<(String, Duration), Arc<dyn Backend>>>,
}

impl Adapters {
    /// The adapter for `config` with the workload's connect timeout.
    pub fn get(&self, config: &BackendConfig, timeouts: &Timeouts) -> Result<Arc<dyn Backend>, BackendError> {
        // A worker-process backend keeps one worker whatever the workload's connect timeout.
        let connect_timeout = if config.kind.is_worker() { Duration::ZERO } else { timeouts.connect };
        let key = (config.name.clone(), connect_timeout);
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(a) = built.get(&key) {
            return Ok(a.clone());
        }
        let adapter: Arc<dyn Backend> = Arc::from(connect(config, timeouts)?);
        built.insert(key, adapter.clone());
        Ok(adapter)
    }

    /// Uses `adapter` for `config` from now on (tests: a scripted backend in the runner).
    #[cfg(test)]
    pub(crate) fn insert(&self, config: &BackendConfig, timeouts: &Timeouts, adapter: Arc<dyn Backend>) {
        let connect_timeout = if config.kind.is_worker() { Duration::ZERO } else { timeouts.connect };
        self.built.lock().unwrap_or_else(|e| e.into_inner()).insert((config.name.clone(), connect_timeout), adapter);
    }

    /// Closes every adapter (stops worker processes).
    pub async fn close(&self) {
        let all: Vec<Arc<dyn Backend>> =
            self.built.lock().unwrap_or_else(|e| e.into_inner()).drain().map(|(_, a)| a).collect();
        for a in all {
            a.close().await;
        }
    }
}
