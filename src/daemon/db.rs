//! The daemon's database (SQLite in WAL mode): torrents as added (the `.torrent` bytes or the
//! magnet link, plus the info dictionary once peers sent it), their settings and lifetime
//! totals, resume data, and session-wide values. The torrents' resume data lives here rather
//! than in per-torrent files, through [`SqliteResumeStore`].
//!
//! A write is one transaction: a crash leaves either the old or the new row. Resume data is
//! still only written after the torrent's files were flushed (the torrent task's invariant),
//! so a row never claims a piece whose bytes are not on disk.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use burrow_swarm::torrent::resume::ResumeData;
use burrow_swarm::torrent::resume_store::ResumeStore;
use burrow_swarm::types::InfoHash;
use rusqlite::{params, Connection, OptionalExtension};

/// Schema version stored in `PRAGMA user_version`.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS torrents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    info_hash BLOB NOT NULL UNIQUE,
    name TEXT NOT NULL,
    metainfo BLOB,
    magnet TEXT,
    info BLOB,
    download_dir TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    done_at INTEGER,
    paused INTEGER NOT NULL DEFAULT 0,
    finished INTEGER NOT NULL DEFAULT 0,
    settings TEXT NOT NULL DEFAULT '{}',
    uploaded INTEGER NOT NULL DEFAULT 0,
    downloaded INTEGER NOT NULL DEFAULT 0,
    seeding_secs INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS resume (
    info_hash BLOB PRIMARY KEY,
    data BLOB NOT NULL,
    saved_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
";

/// One torrent as stored.
#[derive(Debug, Clone)]
pub struct TorrentRow {
    /// Stable id (the RPC's torrent id).
    pub id: i64,
    /// The torrent.
    pub info_hash: InfoHash,
    /// Name shown until the info dictionary says otherwise.
    pub name: String,
    /// The `.torrent` file, when added from one.
    pub metainfo: Option<Vec<u8>>,
    /// The magnet link, when added from one.
    pub magnet: Option<String>,
    /// The info dictionary received from peers (magnet links).
    pub info: Option<Vec<u8>>,
    /// Download folder.
    pub download_dir: String,
    /// When it was added (Unix seconds).
    pub added_at: i64,
    /// When it first completed (Unix seconds).
    pub done_at: Option<i64>,
    /// Stopped by the user.
    pub paused: bool,
    /// Stopped because it reached its seeding limit.
    pub finished: bool,
    /// Per-torrent settings (JSON).
    pub settings: String,
    /// Payload uploaded over its life.
    pub uploaded: u64,
    /// Payload downloaded over its life.
    pub downloaded: u64,
    /// Seconds spent seeding.
    pub seeding_secs: u64,
}

/// A torrent to insert.
pub struct NewTorrent<'a> {
    /// The torrent.
    pub info_hash: InfoHash,
    /// Its name.
    pub name: &'a str,
    /// The `.torrent` bytes, or
    pub metainfo: Option<&'a [u8]>,
    /// the magnet link.
    pub magnet: Option<&'a str>,
    /// Download folder.
    pub download_dir: &'a str,
    /// Added stopped.
    pub paused: bool,
    /// Unix seconds.
    pub added_at: i64,
}

/// The database; one connection shared behind a lock (every statement is short).
#[derive(Debug)]
pub struct Db {
    conn: Mutex<Connection>,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Db {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Arc<Db>> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let conn =
            Connection::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        anyhow::ensure!(
            mode.eq_ignore_ascii_case("wal"),
            "{} cannot use WAL mode ({mode})",
            path.display()
        );
        // NORMAL in WAL mode: a committed transaction survives a crash of the process; a power
        // cut may lose the last ones, which only costs re-verifying a few pieces.
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        anyhow::ensure!(
            version <= SCHEMA_VERSION,
            "{} was written by a newer burrow (schema {version})",
            path.display()
        );
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(&format!("PRAGMA user_version={SCHEMA_VERSION}"))?;
        Ok(Arc::new(Db {
            conn: Mutex::new(conn),
        }))
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic mid-statement leaves SQLite consistent (the transaction rolls back).
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Inserts a torrent and returns its id.
    pub fn insert_torrent(&self, t: &NewTorrent<'_>) -> rusqlite::Result<i64> {
        let c = self.conn();
        c.execute(
            "INSERT INTO torrents (info_hash, name, metainfo, magnet, download_dir, added_at, paused) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![&t.info_hash.0[..], t.name, t.metainfo, t.magnet, t.download_dir, t.added_at, t.paused],
        )?;
        Ok(c.last_insert_rowid())
    }

    /// Every torrent, in id order.
    pub fn torrents(&self) -> rusqlite::Result<Vec<TorrentRow>> {
        let c = self.conn();
        let mut st = c.prepare(
            "SELECT id, info_hash, name, metainfo, magnet, info, download_dir, added_at, done_at, paused, finished, settings, uploaded, downloaded, seeding_secs FROM torrents ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            let ih: Vec<u8> = r.get(1)?;
            Ok(TorrentRow {
                id: r.get(0)?,
                info_hash: InfoHash::from_slice(&ih).unwrap_or_default(),
                name: r.get(2)?,
                metainfo: r.get(3)?,
                magnet: r.get(4)?,
                info: r.get(5)?,
                download_dir: r.get(6)?,
                added_at: r.get(7)?,
                done_at: r.get(8)?,
                paused: r.get(9)?,
                finished: r.get(10)?,
                settings: r.get(11)?,
                uploaded: r.get::<_, i64>(12)?.max(0) as u64,
                downloaded: r.get::<_, i64>(13)?.max(0) as u64,
                seeding_secs: r.get::<_, i64>(14)?.max(0) as u64,
            })
        })?;
        rows.collect()
    }

    /// Deletes a torrent and its resume data.
    pub fn delete_torrent(&self, id: i64) -> rusqlite::Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        tx.execute(
            "DELETE FROM resume WHERE info_hash = (SELECT info_hash FROM torrents WHERE id = ?1)",
            [id],
        )?;
        tx.execute("DELETE FROM torrents WHERE id = ?1", [id])?;
        tx.commit()
    }

    /// Records the user's stop (true) or start (false), and whether the seeding limit was met.
    pub fn set_paused(&self, id: i64, paused: bool, finished: bool) -> rusqlite::Result<()> {
        self.conn()
            .execute(
                "UPDATE torrents SET paused = ?2, finished = ?3 WHERE id = ?1",
                params![id, paused, finished],
            )
            .map(|_| ())
    }

    /// Records the time of first completion.
    pub fn set_done(&self, id: i64, at: Option<i64>) -> rusqlite::Result<()> {
        self.conn()
            .execute(
                "UPDATE torrents SET done_at = ?2 WHERE id = ?1",
                params![id, at],
            )
            .map(|_| ())
    }

    /// Stores the info dictionary fetched from peers, and the name it gives.
    pub fn set_info(&self, id: i64, info: &[u8], name: &str) -> rusqlite::Result<()> {
        self.conn()
            .execute(
                "UPDATE torrents SET info = ?2, name = ?3 WHERE id = ?1",
                params![id, info, name],
            )
            .map(|_| ())
    }

    /// Stores per-torrent settings (JSON).
    pub fn set_settings(&self, id: i64, json: &str) -> rusqlite::Result<()> {
        self.conn()
            .execute(
                "UPDATE torrents SET settings = ?2 WHERE id = ?1",
                params![id, json],
            )
            .map(|_| ())
    }

    /// Stores seconds spent seeding.
    pub fn set_seeding_secs(&self, id: i64, secs: u64) -> rusqlite::Result<()> {
        self.conn()
            .execute(
                "UPDATE torrents SET seeding_secs = ?2 WHERE id = ?1",
                params![id, to_i64(secs)],
            )
            .map(|_| ())
    }

    /// Stores several torrents' seeding times in one transaction.
    pub fn set_seeding_many(&self, rows: &[(i64, u64)]) -> rusqlite::Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut c = self.conn();
        let tx = c.transaction()?;
        {
            let mut st = tx.prepare("UPDATE torrents SET seeding_secs = ?2 WHERE id = ?1")?;
            for (id, secs) in rows {
                st.execute(params![id, to_i64(*secs)])?;
            }
        }
        tx.commit()
    }

    /// Lifetime (uploaded, downloaded) totals as of the last checkpoint.
    pub fn totals(&self, id: i64) -> rusqlite::Result<(u64, u64)> {
        self.conn().query_row(
            "SELECT uploaded, downloaded FROM torrents WHERE id = ?1",
            [id],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?.max(0) as u64,
                    r.get::<_, i64>(1)?.max(0) as u64,
                ))
            },
        )
    }

    /// A torrent's resume data.
    pub fn resume(&self, ih: &InfoHash) -> Option<ResumeData> {
        let blob: Vec<u8> = self
            .conn()
            .query_row(
                "SELECT data FROM resume WHERE info_hash = ?1",
                [&ih.0[..]],
                |r| r.get(0),
            )
            .optional()
            .ok()??;
        ResumeData::decode(&blob)
    }

    /// Makes the next start hash every piece on disk again (a user's "verify"), keeping the
    /// lifetime totals: the stored pieces are cleared and the file stamps dropped.
    pub fn forget_pieces(&self, ih: &InfoHash) -> rusqlite::Result<()> {
        if let Some(mut r) = self.resume(ih) {
            r.have = burrow_swarm::torrent::bitfield::Bitfield::new(r.have.len());
            r.stamps.clear();
            self.save_resume(&r)?;
        }
        Ok(())
    }

    fn save_resume(&self, r: &ResumeData) -> rusqlite::Result<()> {
        let mut c = self.conn();
        let tx = c.transaction()?;
        // A torrent removed while its last checkpoint was being written leaves no orphan.
        tx.execute(
            "INSERT OR REPLACE INTO resume (info_hash, data, saved_at) SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM torrents WHERE info_hash = ?1)",
            params![&r.info_hash.0[..], r.encode(), unix_now()],
        )?;
        tx.execute(
            "UPDATE torrents SET uploaded = ?2, downloaded = ?3 WHERE info_hash = ?1",
            params![&r.info_hash.0[..], to_i64(r.uploaded), to_i64(r.downloaded)],
        )?;
        tx.commit()
    }

    /// Moves a torrent to another download folder.
    pub fn set_download_dir(&self, id: i64, dir: &str) -> rusqlite::Result<()> {
        self.conn()
            .execute(
                "UPDATE torrents SET download_dir = ?2 WHERE id = ?1",
                params![id, dir],
            )
            .map(|_| ())
    }

    /// A session-wide value.
    pub fn meta(&self, key: &str) -> Option<String> {
        self.conn()
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .ok()?
    }

    /// Sets a session-wide value.
    pub fn set_meta(&self, key: &str, value: &str) -> rusqlite::Result<()> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )
            .map(|_| ())
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Resume data kept in the database instead of per-torrent files.
#[derive(Debug, Clone)]
pub struct SqliteResumeStore(pub Arc<Db>);

impl ResumeStore for SqliteResumeStore {
    fn load(&self, info_hash: &InfoHash) -> Option<ResumeData> {
        self.0.resume(info_hash)
    }

    fn save(&self, data: &ResumeData) -> std::io::Result<()> {
        self.0.save_resume(data).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burrow_swarm::torrent::bitfield::Bitfield;

    fn new(ih: u8, name: &str) -> NewTorrent<'_> {
        NewTorrent {
            info_hash: InfoHash([ih; 20]),
            name,
            metainfo: Some(b"d4:infodee"),
            magnet: None,
            download_dir: "/d",
            paused: false,
            added_at: 5,
        }
    }

    #[test]
    fn torrents_and_resume_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db/daemon.sqlite");
        let db = Db::open(&path).unwrap();
        let id = db.insert_torrent(&new(1, "one")).unwrap();
        assert!(
            db.insert_torrent(&new(1, "again")).is_err(),
            "info-hash is unique"
        );
        let store = SqliteResumeStore(db.clone());
        let mut have = Bitfield::new(4);
        have.set(2, true);
        let r = ResumeData {
            info_hash: InfoHash([1; 20]),
            root: "/d".into(),
            have,
            stamps: vec![None],
            uploaded: 10,
            downloaded: 20,
            unflushed: Vec::new(),
            boot: None,
        };
        store.save(&r).unwrap();
        // No row for a torrent that is not in the database.
        store
            .save(&ResumeData {
                info_hash: InfoHash([2; 20]),
                ..r.clone()
            })
            .unwrap();
        assert_eq!(store.load(&InfoHash([2; 20])), None);
        db.set_paused(id, true, false).unwrap();
        drop(db);
        let db = Db::open(&path).unwrap();
        let rows = db.torrents().unwrap();
        assert_eq!(rows.len(), 1);
        assert!(rows[0].paused);
        assert_eq!((rows[0].uploaded, rows[0].downloaded), (10, 20));
        assert_eq!(db.resume(&InfoHash([1; 20])), Some(r));
        db.forget_pieces(&InfoHash([1; 20])).unwrap();
        let forgotten = db.resume(&InfoHash([1; 20])).unwrap();
        assert_eq!(forgotten.have.count(), 0);
        assert_eq!(forgotten.uploaded, 10);
        db.delete_torrent(id).unwrap();
        assert!(db.torrents().unwrap().is_empty());
        assert_eq!(db.resume(&InfoHash([1; 20])), None);
        let mode: String = db
            .conn()
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn meta_values() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(&dir.path().join("d.sqlite")).unwrap();
        assert_eq!(db.meta("k"), None);
        db.set_meta("k", "v1").unwrap();
        db.set_meta("k", "v2").unwrap();
        assert_eq!(db.meta("k").as_deref(), Some("v2"));
    }
}
