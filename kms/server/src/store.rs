//! Choice and opening of the storage backend (`--database`).
//!
//! Adding a backend: a variant of [`Database`], its options in [`DatabaseArgs`], a variant of
//! [`HostStore`] (and its arm in each `Store` method), and an arm in [`open_store`].

use std::fmt;
use std::sync::Arc;

use kms::store::memory::MemoryStore;
use kms::store::{Record, Store, StoreError, Version};
use kms_redis::{RedisFindexStore, StdPool};

/// The store of the host server, chosen at run time. An enum rather than `dyn Store`: the
/// store's methods are `async fn`s, which trait objects cannot have.
///
/// Both backends block inside their futures (a lock; std sockets with timeouts), which is what
/// the host wants: one thread per connection, each request run with `kms::block_on`.
pub enum HostStore {
    /// `--database memory`, behind a blocking lock (threads do not spin while the holder is
    /// descheduled).
    Memory(MemoryStore<parking_lot::RawMutex>),
    /// `--database redis-findex` (boxed: it is much larger than the memory store).
    RedisFindex(Box<RedisFindexStore<StdPool>>),
}

impl fmt::Debug for HostStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostStore::Memory(s) => write!(f, "HostStore::Memory({} records)", s.len()),
            HostStore::RedisFindex(s) => write!(f, "HostStore::RedisFindex({s:?})"),
        }
    }
}

impl HostStore {
    /// An empty memory store.
    pub fn memory() -> Self {
        HostStore::Memory(MemoryStore::with_lock())
    }
}

impl Store for HostStore {
    async fn insert(&self, record: &Record) -> Result<Version, StoreError> {
        match self {
            HostStore::Memory(s) => s.insert(record).await,
            HostStore::RedisFindex(s) => s.insert(record).await,
        }
    }
    async fn get(&self, uid: &str) -> Result<Option<(Record, Version)>, StoreError> {
        match self {
            HostStore::Memory(s) => s.get(uid).await,
            HostStore::RedisFindex(s) => s.get(uid).await,
        }
    }
    async fn update(&self, record: &Record, expected: Version) -> Result<Version, StoreError> {
        match self {
            HostStore::Memory(s) => s.update(record, expected).await,
            HostStore::RedisFindex(s) => s.update(record, expected).await,
        }
    }
    async fn delete(&self, uid: &str, expected: Version) -> Result<(), StoreError> {
        match self {
            HostStore::Memory(s) => s.delete(uid, expected).await,
            HostStore::RedisFindex(s) => s.delete(uid, expected).await,
        }
    }
    async fn search(&self, all_of: &[String]) -> Result<Vec<String>, StoreError> {
        match self {
            HostStore::Memory(s) => s.search(all_of).await,
            HostStore::RedisFindex(s) => s.search(all_of).await,
        }
    }
    async fn search_each(
        &self,
        all_of: &[String],
        alternatives: &[String],
    ) -> Result<Vec<Vec<String>>, StoreError> {
        match self {
            HostStore::Memory(s) => s.search_each(all_of, alternatives).await,
            HostStore::RedisFindex(s) => s.search_each(all_of, alternatives).await,
        }
    }
}

/// Storage backends.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Database {
    /// In-process and volatile: everything is lost when the server stops. For tests and development.
    Memory,
    /// Redis with application-level encryption and a Findex index (`--redis-url`,
    /// `--db-secret-file`); several servers may share one Redis.
    RedisFindex,
}

/// Command-line options that select and configure the store.
#[derive(clap::Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// Storage backend.
    #[arg(long, value_enum, default_value = "memory")]
    pub database: Database,
    /// Redis URL for `--database redis-findex`: `redis://[user:pass@]host:port[/db]`.
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// File holding the base64 of the 32-byte database secret (`--database redis-findex`).
    #[arg(long, value_name = "FILE")]
    pub db_secret_file: Option<std::path::PathBuf>,
    /// Seconds a Redis request may take before it fails with a storage error.
    #[arg(long, default_value_t = 5)]
    pub redis_timeout_secs: u64,
    /// Objects kept decrypted in memory (`--database redis-findex`), invalidated by Redis
    /// (`CLIENT TRACKING`) when any server changes them; 0 disables the cache.
    #[arg(long, default_value_t = kms_redis::cache::DEFAULT_CACHED)]
    pub redis_cache_entries: usize,
}

/// Why the store could not be opened.
#[derive(Debug)]
pub enum OpenStoreError {
    /// Missing or inconsistent options for the chosen backend.
    Config(String),
    /// The backend refused or could not be reached.
    Backend(String),
}

impl fmt::Display for OpenStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenStoreError::Config(m) => write!(f, "database configuration: {m}"),
            OpenStoreError::Backend(m) => write!(f, "database: {m}"),
        }
    }
}

impl std::error::Error for OpenStoreError {}

/// Open the store selected by `args`.
pub fn open_store(args: &DatabaseArgs) -> Result<Arc<HostStore>, OpenStoreError> {
    match args.database {
        // A blocking lock: the host server runs one thread per connection on few cores.
        Database::Memory => Ok(Arc::new(HostStore::memory())),
        Database::RedisFindex => open_redis_findex(args),
    }
}

fn open_redis_findex(args: &DatabaseArgs) -> Result<Arc<HostStore>, OpenStoreError> {
    let url = args.redis_url.as_deref().ok_or_else(|| {
        OpenStoreError::Config(
            "--database redis-findex needs --redis-url redis://host:port[/db]".into(),
        )
    })?;
    let path = args.db_secret_file.as_deref().ok_or_else(|| {
        OpenStoreError::Config(
            "--database redis-findex needs --db-secret-file FILE (base64 of 32 bytes)".into(),
        )
    })?;
    let secret = kms_redis::host::read_secret_file(path)
        .map_err(|e| OpenStoreError::Config(format!("{e} ({})", path.display())))?;
    let timeout = std::time::Duration::from_secs(args.redis_timeout_secs.max(1));
    let opts = kms_redis::ConnectOptions {
        io_timeout: timeout,
        store: kms_redis::StoreOptions {
            cached: args.redis_cache_entries,
            ..Default::default()
        },
        ..Default::default()
    };
    let store = kms_redis::RedisFindexStore::connect(url, &secret, opts)
        .map_err(|e| OpenStoreError::Backend(e.to_string()))?;
    Ok(Arc::new(HostStore::RedisFindex(Box::new(store))))
}
