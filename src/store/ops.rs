//! What the writer's handle sends its thread: one operation per thing soakd records, and the
//! requests for an answer (a run's row id, a flush, a tap, the close) that make a batch commit at
//! once. `writer` queues and batches them; `apply` turns a batch into rows.

use super::rows::{
    Event, Evidence, MemorySample, RequestEnd, RequestStart, RunKey, RunServer, RunStart, RunStatus, ServerSample,
};
use super::tap::Tap;
use tokio::sync::oneshot;

pub(super) enum Op {
    BeginRun(Box<RunStart>, RunKey),
    /// Replies with the run's row id once everything before it is committed.
    RunId(RunKey, oneshot::Sender<Option<i64>>),
    EndRun {
        run: RunKey,
        status: RunStatus,
        finished_at: i64,
        requests_done: u32,
    },
    RequestStarted(Box<RequestStart>),
    RequestFinished(Box<RequestEnd>),
    Sample(Box<MemorySample>),
    Event(Box<Event>),
    RunServer(Box<RunServer>),
    ServerSample(Box<ServerSample>),
    Evidence(Box<Evidence>),
    Flush(oneshot::Sender<()>),
    /// Follow the log from here: the tap reads it as it stands once what came before is
    /// committed, then sees every batch committed after.
    Tap(Box<dyn Tap>),
    /// Commit what came before, then stop.
    Close,
}

impl Op {
    /// Someone waits on this operation: its batch is committed without waiting out the window.
    pub(super) fn is_urgent(&self) -> bool {
        matches!(self, Op::RunId(..) | Op::Flush(_) | Op::Tap(_) | Op::Close)
    }
}
