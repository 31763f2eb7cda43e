//! Committed offsets of the cluster groups, kept in `offsets.json` in the
//! data directory.
//!
//! The file is replaced atomically: written to `offsets.json.tmp`, synced,
//! renamed over `offsets.json`, and the directory synced. A crash leaves
//! either the old file or the new one, never a mix. The journaller writes it
//! every [`JournalConfig::offsets_interval`](super::JournalConfig) while
//! commits change, and at close, so a restart resumes each group at most
//! one interval behind its last commit (at-least-once).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::log::sync_dir;
use super::JournalError;

/// Version of the offsets file this build writes and reads.
const OFFSETS_VERSION: u32 = 1;

/// Group → topic → partition → committed offset (the next to read).
pub type Commits = BTreeMap<String, BTreeMap<String, BTreeMap<u32, u64>>>;

#[derive(Serialize, Deserialize)]
struct OffsetsFile {
    version: u32,
    groups: Commits,
}

/// The offsets file of one data directory.
#[derive(Debug)]
pub(crate) struct OffsetStore {
    path: PathBuf,
    tmp: PathBuf,
    dir: PathBuf,
    last: Commits,
}

impl OffsetStore {
    /// Opens the store in `dir`, reading what was committed before.
    pub(crate) fn open(dir: &Path) -> Result<Self, JournalError> {
        let path = dir.join("offsets.json");
        let last = match std::fs::read(&path) {
            Ok(bytes) => {
                let f: OffsetsFile =
                    serde_json::from_slice(&bytes).map_err(|e| JournalError::Incompatible {
                        file: path.clone(),
                        what: format!("not a telering offsets file: {e}"),
                    })?;
                if f.version != OFFSETS_VERSION {
                    return Err(JournalError::Incompatible {
                        file: path,
                        what: format!(
                            "offsets file version {}; this build reads version {OFFSETS_VERSION}",
                            f.version
                        ),
                    });
                }
                f.groups
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Commits::new(),
            Err(e) => return Err(JournalError::io("read", &path, e)),
        };
        Ok(Self {
            tmp: dir.join("offsets.json.tmp"),
            dir: dir.to_path_buf(),
            path,
            last,
        })
    }

    /// What is on disk now.
    pub(crate) fn committed(&self) -> &Commits {
        &self.last
    }

    /// Writes `commits` (merged over what is stored: a group or partition
    /// nobody reads now keeps its last commit) if it changes anything.
    pub(crate) fn store(&mut self, commits: &Commits) -> Result<(), JournalError> {
        let mut merged = self.last.clone();
        for (g, topics) in commits {
            let mg = merged.entry(g.clone()).or_default();
            for (t, parts) in topics {
                let mt = mg.entry(t.clone()).or_default();
                for (&p, &o) in parts {
                    mt.insert(p, o);
                }
            }
        }
        if merged == self.last {
            return Ok(());
        }
        let f = OffsetsFile {
            version: OFFSETS_VERSION,
            groups: merged,
        };
        let bytes = serde_json::to_vec_pretty(&f).expect("offsets serialise");
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&self.tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&self.tmp, &self.path)
        };
        write().map_err(|e| JournalError::io("replace", &self.path, e))?;
        sync_dir(&self.dir)?;
        self.last = f.groups;
        Ok(())
    }
}
