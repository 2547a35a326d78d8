//! Hot reload: the pipelines directory is watched (inotify, through `notify`); a created,
//! changed or deleted `*.toml` goes to [`Supervisor::file_changed`], which restarts a pipeline
//! only if what it describes changed and keeps it running through an invalid edit.

use crate::supervisor::Supervisor;
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Editors save in bursts (write, rename, chmod): changes are applied once things settle.
const SETTLE: Duration = Duration::from_millis(300);

/// Keeps the watch alive; dropping it stops watching.
pub struct DirWatch {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DirWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching `dir` for description files.
pub fn watch(dir: &Path, supervisor: Arc<Supervisor>) -> notify::Result<DirWatch> {
    let (tx, mut rx) = mpsc::unbounded_channel::<PathBuf>();
    // notify calls this on its own thread: it only forwards paths.
    let mut watcher =
        notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(event) => {
                for path in event.paths {
                    if crate::description::is_description(&path) {
                        let _ = tx.send(path);
                    }
                }
            }
            Err(e) => tracing::warn!("watching the pipelines directory: {e}"),
        })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    let task = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut changed = BTreeSet::from([first]);
            // Collect the rest of the burst.
            loop {
                match tokio::time::timeout(SETTLE, rx.recv()).await {
                    Ok(Some(path)) => {
                        changed.insert(path);
                    }
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            for path in changed {
                supervisor.file_changed(&path).await;
            }
        }
    });
    tracing::info!("watching {} for changes", dir.display());
    Ok(DirWatch {
        _watcher: watcher,
        task,
    })
}
