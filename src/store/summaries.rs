//! What the daemon keeps ahead of a long report, every hour, off the request path: each hour's
//! latency sketches (`latency_hours`) and each settled process life's memory points
//! (`life_points`). Neither is needed for a right answer: a report reads the rows wherever these
//! are missing or disagree with them; with them, months are read as hours and lives.

/// The daemon's hourly pass, on its own connection off the async threads; `points`: the most
/// points the leak analysis keeps of a life.
pub async fn pass(db: std::path::PathBuf, points: usize, shutdown: crate::shutdown::Shutdown) {
    let pass = tokio::task::spawn_blocking(move || {
        let mut conn = super::open(&db).map_err(|e| e.to_string())?;
        let now = crate::time::now_ms();
        let stop = || shutdown.is_stopping();
        let hours = super::latency_hours::fill(&mut conn, now, &stop).map_err(|e| e.to_string())?;
        let lives = super::life_points::fill(&conn, now, points, &stop).map_err(|e| e.to_string())?;
        Ok::<_, String>((hours, lives))
    })
    .await;
    match pass {
        Ok(Ok((hours, lives))) => {
            tracing::debug!(hours = hours.hours, requests = hours.requests, lives, "summaries kept")
        }
        Ok(Err(e)) => tracing::warn!("keeping the report's summaries failed (tried again within the hour): {e}"),
        Err(e) => tracing::warn!("keeping the report's summaries stopped: {e}"),
    }
}
