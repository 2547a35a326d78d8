//! Recordings on disk: `{recordings dir}/{pipeline}/{UTC start}.{ext}` segments written by the
//! `record` outputs ([`writer`]), what the API lists and serves, and retention.
//!
//! Segments are written so that a crash loses at most about a second: Matroska clusters and
//! fragmented-MP4 fragments of at most 1 s, an unbuffered file sink. The registry knows which
//! segments are being written (never deleted, listed with `"recording": true`); everything else
//! it learns from the directory, so recordings from before a restart (or a crash) are listed too.

pub mod writer;

use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// A recording segment as `GET /api/recordings` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordingInfo {
    pub pipeline: String,
    pub file: String,
    pub path: PathBuf,
    /// RFC 3339, from the file name.
    pub started: Option<String>,
    /// Seconds, when the container says (null while recording or after a crash cut it short).
    pub duration: Option<f64>,
    pub bytes: u64,
    pub recording: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("`{0}` is not a valid recording name")]
    BadName(String),
    #[error("no recording {0}")]
    NotFound(String),
    #[error("{0} is being recorded; stop its pipeline first")]
    Busy(String),
    #[error("{0}")]
    Io(String),
}

/// Retention limits of one pipeline's recordings.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Retention {
    pub max_age: Option<Duration>,
    pub max_total_size: Option<u64>,
}

/// Extensions of segment files this service writes.
const EXTENSIONS: &[&str] = &["mkv", "mp4", "webm", "ts"];

pub struct Recordings {
    dir: PathBuf,
    /// Segments being written, per pipeline.
    current: Mutex<HashMap<String, HashSet<PathBuf>>>,
    retention: Mutex<HashMap<String, Retention>>,
    /// Durations of finished segments: (path, size) → seconds.
    durations: Mutex<HashMap<(PathBuf, u64), Option<f64>>>,
    /// Per pipeline since the service started, for `/metrics`.
    counts: Mutex<HashMap<String, Counts>>,
    events: crate::events::EventBus,
}

/// What a pipeline recorded since the service started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    /// Segments opened.
    pub segments: u64,
    /// Bytes in segments that were finished.
    pub bytes_finished: u64,
}

impl Recordings {
    pub fn new(dir: PathBuf, events: crate::events::EventBus) -> Arc<Recordings> {
        // Absolute, so the API's `path` and the safety checks do not depend on the cwd later.
        let dir = std::path::absolute(&dir).unwrap_or(dir);
        Arc::new(Recordings {
            dir,
            current: Mutex::new(HashMap::new()),
            retention: Mutex::new(HashMap::new()),
            durations: Mutex::new(HashMap::new()),
            counts: Mutex::new(HashMap::new()),
            events,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a pipeline's next segment goes, named after its UTC start time.
    pub fn next_segment(&self, pipeline: &str, ext: &str) -> PathBuf {
        let name = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        self.dir.join(pipeline).join(format!("{name}.{ext}"))
    }

    /// A room's participants (`room/participant`) share the room's retention.
    pub fn set_retention(&self, pipeline: &str, retention: Retention) {
        self.retention
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                crate::description::pipeline_of(pipeline).to_string(),
                retention,
            );
    }

    /// A segment started: it is protected from retention and listed as recording.
    pub fn opened(&self, pipeline: &str, path: &Path) {
        tracing::info!("{pipeline}: recording {}", path.display());
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(pipeline.to_string())
            .or_default()
            .insert(path.to_path_buf());
        self.lock_counts()
            .entry(crate::description::pipeline_of(pipeline).to_string())
            .or_default()
            .segments += 1;
        self.events.publish(crate::events::Event::new(
            "segment_opened",
            pipeline,
            serde_json::json!({ "file": path }),
        ));
    }

    /// A segment was finalized (or its pipeline stopped).
    pub fn closed(&self, pipeline: &str, path: &Path) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current
            .get_mut(pipeline)
            .is_some_and(|set| set.remove(path))
        {
            let bytes = self.count_finished(pipeline, path);
            drop(current);
            self.announce_finished(pipeline, path, bytes);
        }
    }

    /// Every segment of the pipeline counts as finished (it stopped or failed).
    pub fn stopped(&self, pipeline: &str) {
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let open = current.remove(pipeline).unwrap_or_default();
        let done: Vec<(PathBuf, u64)> = open
            .into_iter()
            .map(|path| {
                let bytes = self.count_finished(pipeline, &path);
                (path, bytes)
            })
            .collect();
        drop(current);
        for (path, bytes) in done {
            self.announce_finished(pipeline, &path, bytes);
        }
    }

    /// Moves a segment's size into the finished bytes. Called with `current` locked (the lock
    /// order is current, then counts), so a scrape never sees it both open and finished, or
    /// neither.
    fn count_finished(&self, pipeline: &str, path: &Path) -> u64 {
        let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        self.lock_counts()
            .entry(crate::description::pipeline_of(pipeline).to_string())
            .or_default()
            .bytes_finished += bytes;
        bytes
    }

    fn announce_finished(&self, pipeline: &str, path: &Path, bytes: u64) {
        tracing::info!("{pipeline}: finished {}", path.display());
        self.events.publish(crate::events::Event::new(
            "segment_closed",
            pipeline,
            serde_json::json!({ "file": path, "bytes": bytes }),
        ));
    }

    fn lock_counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, Counts>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Per pipeline (a room's participants counted as the room): segments opened and bytes
    /// recorded (finished segments plus what the open ones hold now).
    pub fn counts(&self) -> Vec<(String, Counts, u64, usize)> {
        // Both under the `current` lock: see `count_finished`.
        let current_lock = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let current = current_lock.clone();
        let counts = self.lock_counts().clone();
        drop(current_lock);
        let mut out: Vec<(String, Counts, u64, usize)> = counts
            .into_iter()
            .map(|(pipeline, c)| {
                let open: Vec<&PathBuf> = current
                    .iter()
                    .filter(|(name, _)| crate::description::pipeline_of(name) == pipeline)
                    .flat_map(|(_, paths)| paths)
                    .collect();
                let open_bytes: u64 = open
                    .iter()
                    .filter_map(|p| std::fs::metadata(p).ok())
                    .map(|m| m.len())
                    .sum();
                let n_open = open.len();
                (pipeline, c, c.bytes_finished + open_bytes, n_open)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn is_current(&self, path: &Path) -> bool {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|set| set.contains(path))
    }

    /// Deletes empty segment files: a segment is opened before its first data is written, so a
    /// crash (or a stream that ended at once) can leave one with nothing in it. Call at start,
    /// before any pipeline records. Blocking (directory scan, unlink).
    pub fn remove_empty(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for pipeline in entries.filter_map(|e| e.ok()) {
            let Some(top) = pipeline.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if crate::description::validate_name(&top).is_err() {
                continue;
            }
            for (_, path, bytes, _) in self
                .dirs_of(&top)
                .iter()
                .flat_map(|name| self.segments_of(name))
            {
                let name = &top;
                if bytes == 0 && !self.is_current(&path) && std::fs::remove_file(&path).is_ok() {
                    tracing::info!("{name}: removed the empty segment {}", path.display());
                }
            }
        }
    }

    /// Deletes the pipeline's oldest finished segments beyond its retention limits. Blocking
    /// (directory scan, unlink): call from the blocking pool.
    /// A room's limits hold for all of its participants' segments together.
    pub fn enforce_retention(&self, pipeline: &str) {
        let pipeline = crate::description::pipeline_of(pipeline);
        let Some(limits) = self
            .retention
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(pipeline)
            .copied()
        else {
            return;
        };
        let mut files: Vec<_> = self
            .dirs_of(pipeline)
            .iter()
            .flat_map(|dir| self.segments_of(dir))
            .collect();
        // Oldest first: names are start times.
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let now = SystemTime::now();
        let mut total: u64 = files.iter().map(|f| f.2).sum();
        for (name, path, bytes, modified) in files {
            if self.is_current(&path) {
                continue;
            }
            let too_old = limits
                .max_age
                .zip(modified)
                .is_some_and(|(age, m)| now.duration_since(m).unwrap_or_default() > age);
            let too_big = limits.max_total_size.is_some_and(|max| total > max);
            if !(too_old || too_big) {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    total = total.saturating_sub(bytes);
                    tracing::info!(
                        "{pipeline}: retention removed {name} ({})",
                        if too_old {
                            "older than max_age"
                        } else {
                            "over max_total_size"
                        }
                    );
                }
                Err(e) => tracing::warn!("{pipeline}: cannot remove {name}: {e}"),
            }
        }
    }

    /// A pipeline's directory of segments (a room participant's, `room/participant`, is one
    /// level deeper), if it is a real directory right where its name says: a symlink at any
    /// level could lead anywhere, and what is served, listed, pruned or deleted must stay
    /// inside.
    fn pipeline_dir(&self, pipeline: &str) -> Option<PathBuf> {
        let depth = pipeline.split('/').count();
        if depth > 2 {
            return None;
        }
        let dir = self.dir.join(pipeline);
        let meta = dir.symlink_metadata().ok()?;
        if !meta.is_dir() {
            return None;
        }
        let root = self.dir.canonicalize().ok()?;
        let real = dir.canonicalize().ok()?;
        let parent = real.ancestors().nth(depth);
        (parent == Some(root.as_path())).then_some(real)
    }

    /// A pipeline's segment directories: its own and, for a room, each participant's.
    fn dirs_of(&self, top: &str) -> Vec<String> {
        let mut dirs = vec![top.to_string()];
        let Some(Ok(entries)) = self.pipeline_dir(top).map(std::fs::read_dir) else {
            return dirs;
        };
        let mut subs: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| crate::description::validate_name(n).is_ok())
            .map(|n| format!("{top}/{n}"))
            .collect();
        subs.sort();
        dirs.extend(subs);
        dirs
    }

    /// (file name, path, bytes, modified) of a pipeline's segment files.
    fn segments_of(&self, pipeline: &str) -> Vec<(String, PathBuf, u64, Option<SystemTime>)> {
        let Some(Ok(entries)) = self.pipeline_dir(pipeline).map(std::fs::read_dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                let ext = Path::new(&name).extension()?.to_str()?;
                if !EXTENSIONS.contains(&ext) {
                    return None;
                }
                // Not followed: a symlink placed here is not a recording of ours.
                let meta = e.path().symlink_metadata().ok().filter(|m| m.is_file())?;
                Some((name, e.path(), meta.len(), meta.modified().ok()))
            })
            .collect()
    }

    /// Every segment on disk, per pipeline, oldest first. Blocking: call from the blocking pool.
    pub fn list(&self) -> Vec<RecordingInfo> {
        let mut pipelines: Vec<String> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .filter(|n| crate::description::validate_name(n).is_ok())
                    .collect()
            })
            .unwrap_or_default();
        pipelines.sort();
        let pipelines: Vec<String> = pipelines.iter().flat_map(|p| self.dirs_of(p)).collect();
        let mut out = Vec::new();
        for pipeline in pipelines {
            let mut files = self.segments_of(&pipeline);
            files.sort_by(|a, b| a.0.cmp(&b.0));
            for (file, path, bytes, _) in files {
                let recording = self.is_current(&path);
                let duration = if recording {
                    None
                } else {
                    self.duration(&path, bytes)
                };
                out.push(RecordingInfo {
                    started: started_from_name(&file),
                    pipeline: pipeline.clone(),
                    file,
                    path,
                    duration,
                    bytes,
                    recording,
                });
            }
        }
        out
    }

    /// The container's duration, asked once per (path, size).
    fn duration(&self, path: &Path, bytes: u64) -> Option<f64> {
        let key = (path.to_path_buf(), bytes);
        if let Some(d) = self
            .durations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return *d;
        }
        let d = discover_duration(path);
        self.durations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, d);
        d
    }

    /// The file behind `{pipeline}/{file}`, refusing names that could leave the recordings
    /// directory (`..`, separators, absolute paths, symlinks at either level).
    pub fn resolve(&self, pipeline: &str, file: &str) -> Result<PathBuf, RecordError> {
        let what = format!("{pipeline}/{file}");
        let parts: Vec<&str> = pipeline.split('/').collect();
        if parts.len() > 2
            || parts
                .iter()
                .any(|p| crate::description::validate_name(p).is_err())
        {
            return Err(RecordError::BadName(what));
        }
        let plain = !file.is_empty()
            && file.len() <= 128
            && file
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            && !file.starts_with('.')
            && Path::new(file)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        let ext_ok = Path::new(file)
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e));
        if !plain || !ext_ok {
            return Err(RecordError::BadName(what));
        }
        let dir = self
            .pipeline_dir(pipeline)
            .ok_or_else(|| RecordError::NotFound(what.clone()))?;
        let path = dir.join(file);
        let meta = path
            .symlink_metadata()
            .map_err(|_| RecordError::NotFound(what.clone()))?;
        if !meta.is_file() {
            // A symlink (or anything else) is not served: it could point anywhere.
            return Err(RecordError::NotFound(what));
        }
        Ok(path)
    }

    /// Deletes a finished segment.
    pub fn delete(&self, pipeline: &str, file: &str) -> Result<(), RecordError> {
        let path = self.resolve(pipeline, file)?;
        if self.is_current(&path) {
            return Err(RecordError::Busy(format!("{pipeline}/{file}")));
        }
        std::fs::remove_file(&path).map_err(|e| RecordError::Io(format!("cannot delete: {e}")))
    }
}

/// `20261121T110522.123Z.mkv` → `2026-11-21T11:05:22.123Z`.
fn started_from_name(file: &str) -> Option<String> {
    let stem = file.split('.').take(2).collect::<Vec<_>>().join(".");
    let t = chrono::NaiveDateTime::parse_from_str(stem.trim_end_matches('Z'), "%Y%m%dT%H%M%S%.3f")
        .ok()?;
    Some(
        t.and_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

fn discover_duration(path: &Path) -> Option<f64> {
    let uri = glib::filename_to_uri(path, None).ok()?;
    let discoverer = gst_pbutils::Discoverer::new(gst::ClockTime::from_seconds(3)).ok()?;
    let info = discoverer.discover_uri(&uri).ok()?;
    info.duration().map(|d| d.nseconds() as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_start_times() {
        assert_eq!(
            started_from_name("20261121T110522.123Z.mkv").as_deref(),
            Some("2026-11-21T11:05:22.123Z")
        );
        assert_eq!(started_from_name("holiday.mkv"), None);
    }

    #[test]
    fn resolve_refuses_escapes() {
        let dir = std::env::temp_dir().join(format!("mw-rec-{}", std::process::id()));
        let rec = Recordings::new(dir.clone(), crate::events::EventBus::default());
        for (p, f) in [
            ("../etc", "passwd.mkv"),
            ("cam", "../x.mkv"),
            ("cam", "/etc/passwd"),
            ("cam", "a/b.mkv"),
            ("cam", ".hidden.mkv"),
            ("cam", "notes.txt"),
            ("lobby/../etc", "x.mkv"),
            ("lobby/a/b", "x.mkv"),
            ("lobby/", "x.mkv"),
        ] {
            assert!(
                matches!(rec.resolve(p, f), Err(RecordError::BadName(_))),
                "{p}/{f}"
            );
        }
        assert!(matches!(
            rec.resolve("cam", "x.mkv"),
            Err(RecordError::NotFound(_))
        ));
    }

    #[test]
    fn a_rooms_participants_are_listed_served_and_counted_under_the_room() {
        crate::init().expect("gstreamer");
        let dir = std::env::temp_dir().join(format!("mw-rec-room-{}", std::process::id()));
        let seg = dir.join("lobby/ana-1234abcd/20261121T110522.123Z.mkv");
        std::fs::create_dir_all(seg.parent().expect("parent")).expect("mkdir");
        std::fs::write(&seg, b"x").expect("write");
        let rec = Recordings::new(dir.clone(), crate::events::EventBus::default());
        let list = rec.list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].pipeline, "lobby/ana-1234abcd");
        assert!(
            rec.resolve("lobby/ana-1234abcd", "20261121T110522.123Z.mkv")
                .is_ok()
        );
        rec.opened("lobby/ana-1234abcd", &seg);
        rec.closed("lobby/ana-1234abcd", &seg);
        let counts = rec.counts();
        assert_eq!(counts.len(), 1);
        assert_eq!((counts[0].0.as_str(), counts[0].1.segments), ("lobby", 1));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
