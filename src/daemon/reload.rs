//! Live reload: load every rule; if valid, swap it in (unchanged rules keep
//! their state); if not, keep the running rules and report every error in
//! the log, `/v1/rules` and `tocsin_rules_reload_total{outcome="error"}`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{ReloadView, Shared};
use crate::lang;
use crate::source::{EngineMsg, now};

/// Reloads the rules now. `Ok(n)`: `n` rules running; `Err`: every error.
pub async fn reload(shared: &Shared) -> Result<usize, Vec<String>> {
    let _guard = shared.reload_lock.lock().await;
    let path = shared.config.rules.clone();
    let opts = shared.rule_options();
    let loaded = tokio::task::spawn_blocking(move || lang::load(&path, &opts)).await;
    let result = match loaded {
        Err(e) => Err(vec![format!("reload task failed: {e}")]),
        Ok(Err(e)) => Err(vec![format!("{e}")]),
        Ok(Ok(l)) if l.has_errors() => Err(l.error_lines()),
        Ok(Ok(l)) => match crate::kafka::reload::check(&l.program) {
            Err(e) => Err(e),
            Ok(()) => swap(shared, l.program).await,
        },
    };
    shared.metrics.reload(result.is_ok());
    match &result {
        Ok(n) => tracing::info!(rules = n, "Reload succeeded"),
        Err(errors) => {
            for e in errors {
                tracing::error!("Reload failed, keeping the running rules: {e}");
            }
        }
    }
    shared.set_last_reload(ReloadView {
        ok: result.is_ok(),
        time: now().rfc3339(),
        errors: result.as_ref().err().cloned().unwrap_or_default(),
    });
    result
}

/// Swaps checked rules into the engine thread, then into the Kafka shards
/// ([`crate::kafka::reload`]).
async fn swap(shared: &Shared, program: lang::Program) -> Result<usize, Vec<String>> {
    let n = program.rules.len();
    let kafka = program.clone();
    let (done, wait) = oneshot::channel();
    match shared.engine_sender() {
        Some(tx) => {
            let msg = EngineMsg::Reload { program, done };
            if tx.send(msg).await.is_err() || wait.await.is_err() {
                return Err(vec!["the engine is shutting down".to_string()]);
            }
        }
        None => return Err(vec!["the engine is shutting down".to_string()]),
    }
    crate::kafka::reload::apply(&kafka).await.map(|_| n)
}

/// Reloads on every SIGHUP until cancelled.
pub async fn on_sighup(shared: Arc<Shared>, cancel: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("Cannot listen for SIGHUP; reload with POST /v1/reload");
            return;
        };
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                Some(()) = hup.recv() => {
                    tracing::info!("SIGHUP: reloading rules");
                    let _ = reload(&shared).await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    cancel.cancelled().await;
}

/// Watches the rules location and reloads after changes (debounced).
pub async fn watch(shared: Arc<Shared>, cancel: CancellationToken) {
    use notify::{RecursiveMode, Watcher};
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
    let path = shared.config.rules.clone();
    let is_dir = path.is_dir();
    let rules = path.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !ev.kind.is_access()
            && touches_rules(&ev.paths, &rules, is_dir)
        {
            let _ = tx.try_send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "Cannot watch the rules location; reload with SIGHUP");
            return;
        }
    };
    let target = if is_dir {
        path.clone()
    } else {
        path.parent()
            .map(|p| p.to_path_buf())
            .unwrap_or(path.clone())
    };
    if let Err(e) = watcher.watch(&target, RecursiveMode::NonRecursive) {
        tracing::warn!(error = %e, path = %target.display(), "Cannot watch the rules location");
        return;
    }
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(()) = rx.recv() => {
                // Let an editor finish writing, then take every queued change at once.
                tokio::time::sleep(Duration::from_millis(300)).await;
                while rx.try_recv().is_ok() {}
                tracing::info!("Rules changed on disk: reloading");
                let _ = reload(&shared).await;
            }
        }
    }
    drop(watcher);
}

/// Whether a change in the watched directory is one of the rules: a
/// `.rules` file of a rules directory, or the rules file itself (a single
/// file is watched through its directory, where other files — the
/// daemon's own log, an editor's swap file — change too and must not
/// cause reloads).
fn touches_rules(paths: &[std::path::PathBuf], rules: &std::path::Path, is_dir: bool) -> bool {
    paths.iter().any(|p| {
        if is_dir {
            p.extension().is_some_and(|e| e == "rules")
        } else {
            p.file_name().is_some() && p.file_name() == rules.file_name()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::touches_rules;
    use std::path::{Path, PathBuf};

    #[test]
    fn only_changes_to_the_rules_cause_a_reload() {
        let file = Path::new("/etc/tocsin/main.rules");
        let seen = |p: &str, dir: bool| {
            let rules = if dir { Path::new("/etc/tocsin") } else { file };
            touches_rules(&[PathBuf::from(p)], rules, dir)
        };
        assert!(seen("/etc/tocsin/main.rules", false));
        assert!(!seen("/etc/tocsin/daemon.log", false));
        assert!(!seen("/etc/tocsin/other.rules", false));
        assert!(!seen("/etc/tocsin/.main.rules.swp", false));
        assert!(seen("/etc/tocsin/other.rules", true));
        assert!(!seen("/etc/tocsin/notes.txt", true));
        assert!(!seen("/etc/tocsin/.a.rules.swp", true));
        // A rename names both paths: the new name counts.
        assert!(touches_rules(
            &[PathBuf::from("/etc/tocsin/.tmp123"), file.to_path_buf()],
            file,
            false
        ));
    }
}
