//! [`RedisFindexStore`]: `kms::store::Store` on Redis, with sealed records and a Findex index.
//!
//! Redis layout (all keys and values opaque to Redis):
//! - `kms:canary` → a fixed plaintext sealed under the canary key: detects another secret.
//! - `kms:o:<hex PRF(uid)>` → `version ‖ AES-256-GCM-SIV(record)` or a sealed 24-byte tombstone.
//!
//! Every object value read or written is checked against, then recorded as, the newest version
//! this process has seen of that object ([`crate::rollback`]): an older one is
//! `StoreError::Rollback`. A keyspace with data but no canary does not open.
//! - `kms:f:<hex token>` → a 32-byte XTS-encrypted Findex word (list header or values).
//!
//! Write ordering (a crash between steps never shows a half-written object):
//! - insert: index `Insert(v)` entries, then the object (CAS "absent").
//! - update: GET, index inserts for added keywords, object CAS on the version, then index
//!   `Delete(v)` entries for removed keywords.
//! - delete: GET, object CAS to a tombstone, then index `Delete` entries.
//!
//! Search reads the lists (2 round trips for any number of keywords), intersects them, reads the
//! candidate objects in one `MGET` and keeps those whose current record still carries every
//! keyword: index hits that do not resolve, were left by a crash or a lost CAS, or were tampered
//! with are filtered out.
//!
//! Every Redis round trip is awaited (`kms::store::Store` is async): over a stream that returns
//! `Poll::Pending`, a pending store call holds its pooled connection and lets the driver serve
//! others. The steps above stay sequential because each depends on the previous one's reply
//! (or on its ordering, for crash safety); independent commands of one step are pipelined
//! (the `MGET` chunks of a search or of a full listing, the guarded writes of an append).

use crate::cache::RecordCache;
use crate::client::{Client, ClientError, Command, Transport};
use crate::findex::{Entry, Findex, FindexError, GuardedWrite, Memory, Op, Token, WORD_LEN, Word};
use crate::keys::KeySet;
use crate::resp::Reply;
use crate::rollback::Floors;
use crate::seal::{self, CANARY_KEY, OBJECT_PREFIX, SealError, Sealer, Stored, index_key};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use kms::store::{Record, Store, StoreError, Version};

/// Guarded write of Findex words. `KEYS[1]` guard, `ARGV[1]` expected word (`""` = absent),
/// `KEYS[2..]` / `ARGV[2..]` bindings. Returns the word seen at the guard (nil if absent).
pub const LUA_GUARDED_WRITE: &str = r#"
local cur = redis.call('GET', KEYS[1])
local ok
if cur then ok = (cur == ARGV[1]) else ok = (ARGV[1] == '') end
if ok then
  for i = 2, #KEYS do redis.call('SET', KEYS[i], ARGV[i]) end
end
return cur
"#;

/// Object compare-and-swap. `KEYS[1]` object key; `ARGV[1]` expectation: `""` = absent,
/// `"T"` + tombstone = this tombstone, 8 bytes = live at this version; `ARGV[2]` new value.
/// Returns 1 written, 0 conflict (or exists), -1 not found, or the value (bulk) when an insert
/// expected "absent" and found a tombstone. A value of at most 24 bytes
/// ([`seal::TOMBSTONE_LEN`]) is a tombstone to the script, sealed or not: the store opens it.
pub const LUA_OBJECT_CAS: &str = r#"
local cur = redis.call('GET', KEYS[1])
local e = ARGV[1]
if e == '' then
  if cur then
    if string.len(cur) <= 24 then return cur end
    return 0
  end
elseif string.sub(e, 1, 1) == 'T' then
  if not cur then return -1 end
  if cur ~= string.sub(e, 2) then return 0 end
else
  if not cur or string.len(cur) <= 24 then return -1 end
  if string.sub(cur, 1, 8) ~= e then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"#;

/// Why the store could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// The database was created with another secret (its canary does not open).
    WrongSecret,
    /// The database holds KMS objects or index words but no canary: someone deleted it, which
    /// would disable the wrong-secret check.
    CanaryMissing,
    /// Redis could not be reached or refused the session set-up.
    Unavailable(ClientError),
    /// Redis answered something unexpected.
    Backend(&'static str),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::WrongSecret => f.write_str(
                "the Redis database was created with a different database secret (canary does not decrypt): \
                 refusing to use it",
            ),
            OpenError::CanaryMissing => f.write_str(
                "the Redis database holds KMS data but its canary (kms:canary) is missing: refusing \
                 to use it (restore the canary from a backup of this database)",
            ),
            OpenError::Unavailable(e) => write!(f, "Redis unavailable: {e}"),
            OpenError::Backend(m) => write!(f, "Redis error: {m}"),
        }
    }
}

impl core::error::Error for OpenError {}

/// Tunables of [`RedisFindexStore::open_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreOptions {
    /// Most Findex value words one search reads ([`crate::findex::MAX_READ_WORDS`] by
    /// default). A query whose every list is longer is refused; lists have no length limit.
    pub max_read_words: u64,
    /// Objects, and index lists, whose newest state the store remembers to refuse a Redis
    /// rollback ([`crate::rollback`]; [`crate::rollback::DEFAULT_REMEMBERED`] by default, least
    /// recently used forgotten first, 0 disables the detection).
    pub remembered: usize,
    /// Opened records cached in memory, invalidated through `CLIENT TRACKING`
    /// ([`crate::cache`]; [`crate::cache::DEFAULT_CACHED`] by default, 0 disables the cache and
    /// its tracking connection).
    pub cached: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_read_words: crate::findex::MAX_READ_WORDS,
            remembered: crate::rollback::DEFAULT_REMEMBERED,
            cached: crate::cache::DEFAULT_CACHED,
        }
    }
}

/// Hands out Redis clients; implementations provide the locking (std `Mutex` on the host).
///
/// No `Send`/`Sync` bound: a pool shared between threads (the host's) is `Sync` by its type, a
/// single-threaded one (the unikernel's) need not be.
pub trait Pool {
    /// The transport of the clients.
    type Transport: Transport;
    /// The group commit of index appends ([`NoBatcher`] when there is none).
    type Batcher: AppendBatcher;
    /// The lock of the store's shared state (record cache, rollback floors, tracking
    /// connection), held for short, non-blocking sections: a spin lock when one thread drives
    /// everything (the image), a blocking one when threads outnumber cores (the host).
    type Lock: lock_api::RawMutex;
    /// Take an idle client or make a new one (connecting lazily).
    fn acquire(&self) -> Client<Self::Transport>;
    /// Give a client back.
    fn release(&self, client: Client<Self::Transport>);
    /// Optional group commit of index appends between the threads of this process
    /// ([`AppendBatcher`]); `None` appends each caller's entries on its own.
    fn batcher(&self) -> Option<&Self::Batcher> {
        None
    }
}

/// Index changes: (keyword, entry).
pub type Changes = Vec<(Vec<u8>, Entry)>;

/// Group commit of Findex appends: concurrent callers in one process hand their changes to one
/// leader, which appends them all with one guarded write per keyword. Without it, writers that
/// share a hot keyword (`owner=…`, `type=…`) retry each other's compare-and-swap many times.
// `async fn` in a public trait: no `Send` bound on the futures, on purpose.
#[allow(async_fn_in_trait)]
pub trait AppendBatcher {
    /// Append `changes` merged with those of concurrent callers. `run` performs one append of a
    /// merged batch; it is called by exactly one caller per batch. Returns when the batch that
    /// holds `changes` is appended (or failed: then every caller of that batch gets the error).
    async fn submit<F>(&self, changes: Changes, run: F) -> Result<(), StoreError>
    where
        F: AsyncFnMut(&Changes) -> Result<(), StoreError>;
}

/// The [`Pool::Batcher`] of a pool without group commit (it has no value).
#[derive(Debug)]
pub enum NoBatcher {}

impl AppendBatcher for NoBatcher {
    async fn submit<F>(&self, _: Changes, _: F) -> Result<(), StoreError>
    where
        F: AsyncFnMut(&Changes) -> Result<(), StoreError>,
    {
        match *self {}
    }
}

struct Scripts {
    guarded: usize,
    cas: usize,
}

struct Lease<'a, P: Pool> {
    pool: &'a P,
    client: Option<Client<P::Transport>>,
    scripts: Scripts,
}

impl<P: Pool> Lease<'_, P> {
    fn c(&mut self) -> Result<&mut Client<P::Transport>, StoreError> {
        self.client.as_mut().ok_or(StoreError::Backend("no client"))
    }
}

impl<P: Pool> Drop for Lease<'_, P> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            self.pool.release(c);
        }
    }
}

/// Map a client failure to the store's error (never echoes data).
pub fn unavailable(e: &ClientError) -> StoreError {
    match e {
        ClientError::Io(embedded_io::ErrorKind::TimedOut)
        | ClientError::Connect(embedded_io::ErrorKind::TimedOut) => {
            StoreError::Unavailable("Redis did not answer in time")
        }
        ClientError::Connect(_) => StoreError::Unavailable("cannot connect to Redis"),
        ClientError::Io(_) | ClientError::Closed => {
            StoreError::Unavailable("Redis connection lost")
        }
        ClientError::Protocol(_) => StoreError::Corrupt("malformed Redis reply"),
        ClientError::Auth => StoreError::Unavailable("Redis refused AUTH"),
        ClientError::Select => StoreError::Unavailable("Redis refused SELECT"),
        ClientError::Script => StoreError::Backend("Redis refused to load a Lua script"),
        ClientError::Loading => StoreError::Unavailable("Redis is loading its dataset"),
        ClientError::Tracking => StoreError::Backend("Redis refused CLIENT TRACKING"),
    }
}

fn reply_error(r: &Reply) -> StoreError {
    match r {
        Reply::Error(e) if e.starts_with("LOADING") => {
            StoreError::Unavailable("Redis is loading its dataset")
        }
        Reply::Error(e) if e.starts_with("BUSY") => {
            StoreError::Unavailable("Redis is busy running a script")
        }
        Reply::Error(e) if e.starts_with("OOM") => StoreError::Backend("Redis is out of memory"),
        Reply::Error(e) if e.starts_with("READONLY") => {
            StoreError::Backend("Redis is a read-only replica")
        }
        Reply::Error(e) if e.starts_with("MISCONF") => {
            StoreError::Backend("Redis cannot persist (MISCONF)")
        }
        Reply::Error(e) if e.starts_with("NOAUTH") || e.starts_with("NOPERM") => {
            StoreError::Backend("Redis refused the command (ACL)")
        }
        Reply::Error(_) => StoreError::Backend("Redis refused a command"),
        _ => StoreError::Corrupt("unexpected Redis reply"),
    }
}

fn seal_err(e: SealError) -> StoreError {
    match e {
        SealError::Malformed => StoreError::Corrupt("stored object is malformed"),
        SealError::Authentication => {
            StoreError::Corrupt("stored object does not authenticate (tampered or wrong secret)")
        }
        SealError::WrongUid => StoreError::Corrupt("stored object belongs to another uid"),
        SealError::Tombstone => {
            StoreError::Corrupt("tombstone does not authenticate (forged or unsealed)")
        }
    }
}

fn findex_err(e: FindexError<StoreError>) -> StoreError {
    match e {
        FindexError::Memory(e) => e,
        FindexError::Corrupt(m) => StoreError::Corrupt(m),
        FindexError::EntryTooLong => StoreError::Backend("uid too long for the index"),
        FindexError::Contention => StoreError::Unavailable("index contention: too many retries"),
        FindexError::TooLarge => {
            StoreError::Backend("index list too long to read: add a narrower keyword to the query")
        }
    }
}

/// Findex memory on a Redis client: `MGET` and the guarded-write script, pipelined.
pub struct RedisMemory<'a, T: Transport> {
    client: &'a mut Client<T>,
    script: usize,
}

/// Most keys per `MGET` (a pipeline carries several).
const MGET_CHUNK: usize = 4096;
/// Search reads every list up to this many words, and larger ones only if none is smaller.
const SMALL_LIST_WORDS: u64 = 64;

fn word_of(r: Reply) -> Result<Option<Word>, StoreError> {
    match r {
        Reply::Nil => Ok(None),
        Reply::Bulk(b) => <[u8; WORD_LEN]>::try_from(b.as_slice())
            .map(Some)
            .map_err(|_| StoreError::Corrupt("index word has the wrong size")),
        other => Err(reply_error(&other)),
    }
}

impl<T: Transport> Memory for RedisMemory<'_, T> {
    type Error = StoreError;

    async fn batch_read(&mut self, tokens: &[Token]) -> Result<Vec<Option<Word>>, StoreError> {
        let cmds: Vec<Command> = tokens
            .chunks(MGET_CHUNK)
            .map(|c| {
                let mut a = vec![b"MGET".to_vec()];
                a.extend(c.iter().map(index_key));
                Command::Plain(a)
            })
            .collect();
        let replies = self
            .client
            .pipeline(&cmds)
            .await
            .map_err(|e| unavailable(&e))?;
        let mut out = Vec::with_capacity(tokens.len());
        for (r, c) in replies.into_iter().zip(tokens.chunks(MGET_CHUNK)) {
            match r {
                Reply::Array(items) if items.len() == c.len() => {
                    for it in items {
                        out.push(word_of(it)?);
                    }
                }
                other => return Err(reply_error(&other)),
            }
        }
        Ok(out)
    }

    async fn batch_guarded_write(
        &mut self,
        writes: &[GuardedWrite],
    ) -> Result<Vec<Option<Word>>, StoreError> {
        let cmds: Vec<Command> = writes
            .iter()
            .map(|w| {
                let mut keys = vec![index_key(&w.guard)];
                let mut args = vec![w.expected.map(|e| e.to_vec()).unwrap_or_default()];
                for (t, word) in &w.bindings {
                    keys.push(index_key(t));
                    args.push(word.to_vec());
                }
                Command::Script {
                    script: self.script,
                    keys,
                    args,
                }
            })
            .collect();
        let replies = self
            .client
            .pipeline(&cmds)
            .await
            .map_err(|e| unavailable(&e))?;
        replies.into_iter().map(word_of).collect()
    }
}

/// The Redis-with-Findex store. `P` supplies connections (see `crate::host::StdPool`).
pub struct RedisFindexStore<P: Pool> {
    pool: P,
    sealer: Sealer,
    findex: Findex,
    max_read_words: u64,
    objects: Floors<P::Lock>,
    cache: Option<RecordCache<P::Lock>>,
    tracker: lock_api::Mutex<P::Lock, Tracker<P::Transport>>,
}

/// The connection that receives invalidation messages for the cache, and its reconnection
/// back-off (counted in store reads: the core reads no clock).
struct Tracker<T: Transport> {
    client: Option<Client<T>>,
    /// A task is opening the connection (outside the lock).
    connecting: bool,
    /// Reads to let pass before the next attempt, and the current back-off (doubles to 1024).
    wait: u32,
    backoff: u32,
}

impl<P: Pool> fmt::Debug for RedisFindexStore<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedisFindexStore(<keys redacted>)")
    }
}

enum Cas {
    Written,
    Conflict,
    NotFound,
    /// The value found where an insert expected none (a tombstone, not yet authenticated).
    Tombstone(Vec<u8>),
}

const ROLLBACK: StoreError =
    StoreError::Rollback("Redis returned an object older than a version already seen");

fn version_in(s: &Stored) -> Version {
    match s {
        Stored::Live(_, v) | Stored::Tombstone(v) => *v,
    }
}

impl<P: Pool> RedisFindexStore<P> {
    /// Open the store: derive the keys, check the canary (creating it on an empty database).
    /// Fails with [`OpenError::WrongSecret`] when the database belongs to another secret.
    pub async fn open(pool: P, db_secret: &[u8; 32]) -> Result<Self, OpenError> {
        Self::open_with(pool, db_secret, StoreOptions::default()).await
    }

    /// [`RedisFindexStore::open`] with explicit [`StoreOptions`].
    pub async fn open_with(
        pool: P,
        db_secret: &[u8; 32],
        options: StoreOptions,
    ) -> Result<Self, OpenError> {
        let keys = KeySet::derive(db_secret);
        let store = RedisFindexStore {
            pool,
            sealer: Sealer::new(&keys),
            findex: Findex::new(&keys.findex).with_max_read_words(options.max_read_words),
            max_read_words: options.max_read_words,
            objects: Floors::new(options.remembered),
            cache: (options.cached > 0).then(|| RecordCache::new(options.cached)),
            tracker: lock_api::Mutex::new(Tracker {
                client: None,
                connecting: false,
                wait: 0,
                backoff: 1,
            }),
        };
        store.check_canary().await?;
        store.refresh_cache().await;
        Ok(store)
    }

    /// The record cache's counters (`None` when the cache is disabled).
    pub fn cache_stats(&self) -> Option<crate::cache::CacheStats> {
        self.cache.as_ref().map(RecordCache::stats)
    }

    /// Apply the invalidation messages that have arrived (never waits), or (re)open the tracking
    /// connection when it is down and its back-off has passed. See [`crate::cache`].
    async fn refresh_cache(&self) {
        let Some(cache) = &self.cache else { return };
        let mut client = {
            let mut t = self.tracker.lock();
            if let Some(c) = t.client.as_mut() {
                let polled = c.poll_invalidations(|keys| match keys {
                    Some(list) => {
                        for k in list {
                            match k {
                                Reply::Bulk(k) => match seal::object_id_of_key(k) {
                                    Some(id) => cache.invalidate(&id),
                                    None => cache.flush(),
                                },
                                _ => cache.flush(),
                            }
                        }
                    }
                    None => cache.flush(),
                });
                if polled.is_err() {
                    // Messages may have been lost: no cache until tracking is back.
                    t.client = None;
                    cache.set_live(false);
                    t.backoff = 1;
                    t.wait = 0;
                }
                return;
            }
            if t.connecting {
                return;
            }
            if t.wait > 0 {
                t.wait -= 1;
                return;
            }
            t.connecting = true;
            self.pool.acquire()
        };
        // Outside the lock: the connection may take several polls (or block, on the host).
        let r = client.track_invalidations(OBJECT_PREFIX).await;
        let mut t = self.tracker.lock();
        t.connecting = false;
        match r {
            Ok(()) => {
                cache.set_live(true);
                t.client = Some(client);
                t.backoff = 1;
            }
            Err(_) => {
                t.backoff = t.backoff.saturating_mul(2).min(1024);
                t.wait = t.backoff;
            }
        }
    }

    /// A write of this process changed (or may have changed) `uid`'s record.
    fn invalidate(&self, id: &[u8; 16]) {
        if let Some(c) = &self.cache {
            c.invalidate(id);
        }
    }

    /// The pool (tests read connection counters through it).
    pub fn pool(&self) -> &P {
        &self.pool
    }

    async fn check_canary(&self) -> Result<(), OpenError> {
        let mut l = self.lease();
        let c = l.c().map_err(|_| OpenError::Backend("no client"))?;
        let canary = self.sealer.canary();
        if self.read_canary(c).await?.is_none() && holds_data(c).await? {
            // A server creates the canary before it writes anything: data without a canary
            // means someone deleted it, unless a server created both since our first look.
            return match self.read_canary(c).await? {
                Some(r) => r,
                None => Err(OpenError::CanaryMissing),
            };
        }
        // SET NX then GET in one round trip: whoever created it first, we verify what is there.
        let r = c
            .pipeline(&[
                Command::new(&[b"SET", CANARY_KEY, &canary, b"NX"]),
                Command::new(&[b"GET", CANARY_KEY]),
            ])
            .await
            .map_err(OpenError::Unavailable)?;
        match r.get(1) {
            Some(Reply::Bulk(v)) if self.sealer.canary_matches(v) => Ok(()),
            Some(Reply::Bulk(_)) => Err(OpenError::WrongSecret),
            Some(r) if r.is_error_code("LOADING") => {
                Err(OpenError::Unavailable(ClientError::Loading))
            }
            Some(Reply::Error(_)) => Err(OpenError::Backend("Redis refused to store the canary")),
            _ => Err(OpenError::Backend("unexpected reply reading the canary")),
        }
    }

    /// The canary's verdict, `None` when there is no canary.
    async fn read_canary(
        &self,
        c: &mut Client<P::Transport>,
    ) -> Result<Option<Result<(), OpenError>>, OpenError> {
        let r = c
            .request(&[b"GET", CANARY_KEY])
            .await
            .map_err(OpenError::Unavailable)?;
        match r {
            Reply::Nil => Ok(None),
            Reply::Bulk(v) if self.sealer.canary_matches(&v) => Ok(Some(Ok(()))),
            Reply::Bulk(_) => Ok(Some(Err(OpenError::WrongSecret))),
            r if r.is_error_code("LOADING") => Err(OpenError::Unavailable(ClientError::Loading)),
            _ => Err(OpenError::Backend("unexpected reply reading the canary")),
        }
    }

    fn lease(&self) -> Lease<'_, P> {
        let mut client = self.pool.acquire();
        let scripts = Scripts {
            guarded: client.register_script(LUA_GUARDED_WRITE),
            cas: client.register_script(LUA_OBJECT_CAS),
        };
        Lease {
            pool: &self.pool,
            client: Some(client),
            scripts,
        }
    }

    /// Check an opened value against the newest version of that object seen before the request
    /// (`before`), and remember it.
    fn observe(&self, id: &[u8; 16], before: u64, s: &Stored) -> Result<(), StoreError> {
        self.objects
            .observe(id, before, version_in(s).0)
            .map_err(|_| ROLLBACK)
    }

    async fn read(&self, l: &mut Lease<'_, P>, uid: &str) -> Result<Option<Stored>, StoreError> {
        let key = self.sealer.object_key(uid);
        let id = self.sealer.object_id(uid);
        let before = self.objects.get(&id);
        match l
            .c()?
            .request(&[b"GET", &key])
            .await
            .map_err(|e| unavailable(&e))?
        {
            // Absent after a version was seen: Redis deleted the key (as it may); an insert
            // then continues after the version seen (`insert`).
            Reply::Nil => Ok(None),
            Reply::Bulk(v) => {
                let s = self.sealer.open(uid, &v).map_err(seal_err)?;
                self.observe(&id, before, &s)?;
                Ok(Some(s))
            }
            other => Err(reply_error(&other)),
        }
    }

    async fn cas(
        &self,
        l: &mut Lease<'_, P>,
        uid: &str,
        expect: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<Cas, StoreError> {
        let key = self.sealer.object_key(uid);
        let script = l.scripts.cas;
        let cmd = Command::Script {
            script,
            keys: vec![key],
            args: vec![expect, value],
        };
        let mut r = l.c()?.pipeline(&[cmd]).await.map_err(|e| unavailable(&e))?;
        match r.pop() {
            Some(Reply::Integer(1)) => Ok(Cas::Written),
            Some(Reply::Integer(0)) => Ok(Cas::Conflict),
            Some(Reply::Integer(-1)) => Ok(Cas::NotFound),
            Some(Reply::Bulk(t)) => Ok(Cas::Tombstone(t)),
            Some(other) => Err(reply_error(&other)),
            None => Err(StoreError::Unavailable("Redis connection lost")),
        }
    }

    async fn index(
        &self,
        l: &mut Lease<'_, P>,
        op: Op,
        version: Version,
        uid: &str,
        keywords: &[&String],
    ) -> Result<(), StoreError> {
        if keywords.is_empty() {
            return Ok(());
        }
        let changes: Changes = keywords
            .iter()
            .map(|k| {
                let entry = Entry {
                    op,
                    version: version.0,
                    uid: uid.as_bytes().to_vec(),
                };
                (k.as_bytes().to_vec(), entry)
            })
            .collect();
        let script = l.scripts.guarded;
        let client = l.c()?;
        let mut run = async |batch: &Changes| {
            let refs: Vec<(&[u8], Entry)> = batch
                .iter()
                .map(|(k, e)| (k.as_slice(), e.clone()))
                .collect();
            let mut mem = RedisMemory {
                client: &mut *client,
                script,
            };
            self.findex
                .append(&mut mem, &refs)
                .await
                .map_err(findex_err)
        };
        match self.pool.batcher() {
            Some(b) => b.submit(changes, run).await,
            None => run(&changes).await,
        }
    }

    async fn all_uids(&self, l: &mut Lease<'_, P>) -> Result<Vec<String>, StoreError> {
        // SCAN the object keys, then MGET them; the uid is only known after opening.
        let mut cursor = b"0".to_vec();
        let mut keys = Vec::new();
        let mut pattern = OBJECT_PREFIX.to_vec();
        pattern.push(b'*');
        loop {
            let r = l
                .c()?
                .request(&[b"SCAN", &cursor, b"MATCH", &pattern, b"COUNT", b"1000"])
                .await
                .map_err(|e| unavailable(&e))?;
            let Reply::Array(mut parts) = r else {
                return Err(reply_error(&r));
            };
            let (Some(Reply::Array(batch)), Some(Reply::Bulk(next))) = (parts.pop(), parts.pop())
            else {
                return Err(StoreError::Corrupt("unexpected SCAN reply"));
            };
            for k in batch {
                if let Reply::Bulk(k) = k {
                    keys.push(k);
                }
            }
            if next == b"0" {
                break;
            }
            cursor = next;
            if keys.len() > 10_000_000 {
                return Err(StoreError::Backend("too many objects to list"));
            }
        }
        // Every chunk's MGET in one pipeline (one round trip).
        let ids: Vec<Option<[u8; 16]>> = keys.iter().map(|k| seal::object_id_of_key(k)).collect();
        let before: Vec<u64> = ids
            .iter()
            .map(|id| id.map_or(0, |id| self.objects.get(&id)))
            .collect();
        let cmds: Vec<Command> = keys
            .chunks(MGET_CHUNK)
            .map(|chunk| {
                let mut a = vec![b"MGET".to_vec()];
                a.extend(chunk.iter().cloned());
                Command::Plain(a)
            })
            .collect();
        let replies = if cmds.is_empty() {
            Vec::new()
        } else {
            l.c()?.pipeline(&cmds).await.map_err(|e| unavailable(&e))?
        };
        if replies.len() != cmds.len() {
            return Err(StoreError::Corrupt(
                "Redis answered the wrong number of replies",
            ));
        }
        let mut out = Vec::new();
        let checks = ids.chunks(MGET_CHUNK).zip(before.chunks(MGET_CHUNK));
        for ((r, chunk), (ids, before)) in
            replies.into_iter().zip(keys.chunks(MGET_CHUNK)).zip(checks)
        {
            let Reply::Array(vals) = r else {
                return Err(reply_error(&r));
            };
            for (((v, k), id), before) in vals.into_iter().zip(chunk).zip(ids).zip(before) {
                let Reply::Bulk(v) = v else { continue };
                let s = self.sealer.open_at(k, &v).map_err(seal_err)?;
                if let Some(id) = id {
                    self.observe(id, *before, &s)?;
                }
                if let Stored::Live(r, _) = s {
                    out.push(r.uid.clone());
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

impl<P: Pool> Store for RedisFindexStore<P> {
    async fn insert(&self, record: &Record) -> Result<Version, StoreError> {
        let mut l = self.lease();
        let kws: Vec<&String> = dedup(&record.keywords);
        let id = self.sealer.object_id(&record.uid);
        // A uid this process has seen before (then Redis dropped its key) continues after the
        // version seen, so that no older value of it can pass for the new one.
        let first = |floor: u64| Version(floor.saturating_add(1).max(1));
        let mut version = first(self.objects.get(&id));
        self.index(&mut l, Op::Insert, version, &record.uid, &kws)
            .await?;
        let mut expect = Vec::new();
        for _ in 0..8 {
            let value = self.sealer.seal(record, version).map_err(seal_err)?;
            let before = self.objects.get(&id);
            match self.cas(&mut l, &record.uid, expect.clone(), value).await? {
                Cas::Written => {
                    self.invalidate(&id);
                    self.objects
                        .observe(&id, 0, version.0)
                        .map_err(|_| ROLLBACK)?;
                    return Ok(version);
                }
                Cas::Conflict => return Err(StoreError::AlreadyExists),
                Cas::NotFound => {
                    // The tombstone vanished between our two tries: start again from "absent".
                    expect = Vec::new();
                    version = first(self.objects.get(&id));
                }
                Cas::Tombstone(raw) => {
                    // Re-insert of a deleted uid: continue its version numbering after the
                    // (authenticated) tombstone so the old incarnation's index entries stay
                    // obsolete and its older values cannot pass for the new one.
                    let s = self.sealer.open(&record.uid, &raw).map_err(seal_err)?;
                    let Stored::Tombstone(t) = s else {
                        return Err(StoreError::AlreadyExists);
                    };
                    self.observe(&id, before, &s)?;
                    version = Version(
                        t.0.checked_add(1)
                            .ok_or(StoreError::Backend("version overflow"))?,
                    );
                    self.index(&mut l, Op::Insert, version, &record.uid, &kws)
                        .await?;
                    expect = vec![b'T'];
                    expect.extend_from_slice(&raw);
                }
            }
        }
        Err(StoreError::Unavailable(
            "insert contention: too many retries",
        ))
    }

    async fn get(&self, uid: &str) -> Result<Option<(Record, Version)>, StoreError> {
        let mut ticket = None;
        if let Some(cache) = &self.cache {
            self.refresh_cache().await;
            let id = self.sealer.object_id(uid);
            if let Some(hit) = cache.lookup(&id, self.objects.get(&id)) {
                return Ok(Some(hit));
            }
            ticket = cache.ticket().map(|t| (t, id));
        }
        let mut l = self.lease();
        match self.read(&mut l, uid).await? {
            Some(Stored::Live(r, v)) => {
                if let (Some(cache), Some((t, id))) = (&self.cache, ticket) {
                    cache.fill(&id, t, &r, v);
                }
                Ok(Some((r, v)))
            }
            _ => Ok(None),
        }
    }

    async fn update(&self, record: &Record, expected: Version) -> Result<Version, StoreError> {
        let mut l = self.lease();
        let old = match self.read(&mut l, &record.uid).await? {
            Some(Stored::Live(r, v)) => {
                if v != expected {
                    return Err(StoreError::Conflict);
                }
                r
            }
            _ => return Err(StoreError::NotFound),
        };
        let next = Version(
            expected
                .0
                .checked_add(1)
                .ok_or(StoreError::Backend("version overflow"))?,
        );
        let old_set: BTreeSet<&String> = old.keywords.iter().collect();
        let new_set: BTreeSet<&String> = record.keywords.iter().collect();
        let added: Vec<&String> = new_set.difference(&old_set).copied().collect();
        let removed: Vec<&String> = old_set.difference(&new_set).copied().collect();
        self.index(&mut l, Op::Insert, next, &record.uid, &added)
            .await?;
        let value = self.sealer.seal(record, next).map_err(seal_err)?;
        match self
            .cas(
                &mut l,
                &record.uid,
                expected.0.to_be_bytes().to_vec(),
                value,
            )
            .await?
        {
            Cas::Written => {
                let id = self.sealer.object_id(&record.uid);
                self.invalidate(&id);
                self.objects.observe(&id, 0, next.0).map_err(|_| ROLLBACK)?;
            }
            Cas::Conflict => return Err(StoreError::Conflict),
            Cas::NotFound | Cas::Tombstone(_) => return Err(StoreError::NotFound),
        }
        // The object is committed; a failure now leaves stale hits that search filters out.
        let _ = self
            .index(&mut l, Op::Delete, next, &record.uid, &removed)
            .await;
        Ok(next)
    }

    async fn delete(&self, uid: &str, expected: Version) -> Result<(), StoreError> {
        let mut l = self.lease();
        let old = match self.read(&mut l, uid).await? {
            Some(Stored::Live(r, v)) => {
                if v != expected {
                    return Err(StoreError::Conflict);
                }
                r
            }
            _ => return Err(StoreError::NotFound),
        };
        let gone = Version(
            expected
                .0
                .checked_add(1)
                .ok_or(StoreError::Backend("version overflow"))?,
        );
        match self
            .cas(
                &mut l,
                uid,
                expected.0.to_be_bytes().to_vec(),
                self.sealer.tombstone(&self.sealer.object_key(uid), gone),
            )
            .await?
        {
            Cas::Written => {
                let id = self.sealer.object_id(uid);
                self.invalidate(&id);
                self.objects.observe(&id, 0, gone.0).map_err(|_| ROLLBACK)?;
            }
            Cas::Conflict => return Err(StoreError::Conflict),
            Cas::NotFound | Cas::Tombstone(_) => return Err(StoreError::NotFound),
        }
        let kws: Vec<&String> = dedup(&old.keywords);
        let _ = self.index(&mut l, Op::Delete, gone, uid, &kws).await;
        Ok(())
    }

    async fn search(&self, all_of: &[String]) -> Result<Vec<String>, StoreError> {
        if all_of.is_empty() {
            let mut l = self.lease();
            return self.all_uids(&mut l).await;
        }
        let set: Vec<&String> = all_of.iter().collect();
        let mut r = self.search_sets(&[set]).await?;
        Ok(r.pop().unwrap_or_default())
    }

    async fn search_each(
        &self,
        all_of: &[String],
        alternatives: &[String],
    ) -> Result<Vec<Vec<String>>, StoreError> {
        let sets: Vec<Vec<&String>> = alternatives
            .iter()
            .map(|a| all_of.iter().chain(core::iter::once(a)).collect())
            .collect();
        self.search_sets(&sets).await
    }
}

impl<P: Pool> RedisFindexStore<P> {
    /// For each keyword set, the uids whose record carries every keyword of the set: one
    /// search for all of them (3 round trips: list headers, list values, candidate records).
    async fn search_sets(&self, sets: &[Vec<&String>]) -> Result<Vec<Vec<String>>, StoreError> {
        let out: Vec<Vec<String>> = sets.iter().map(|_| Vec::new()).collect();
        if sets.is_empty() {
            return Ok(out);
        }
        // Candidates in the record cache need no MGET: apply the invalidations that have
        // arrived now, as `get` does before its lookup (same staleness window).
        self.refresh_cache().await;
        let mut l = self.lease();
        // Every distinct keyword once.
        let all: BTreeSet<&[u8]> = sets.iter().flatten().map(|k| k.as_bytes()).collect();
        let kws: Vec<&[u8]> = all.into_iter().collect();
        if kws.is_empty() || sets.iter().any(|s| s.is_empty()) {
            return Err(StoreError::Backend("empty keyword set"));
        }
        let script = l.scripts.guarded;
        // per set: the positions (in `chosen`) of the lists read for it
        let (chosen, plan, hits) = {
            let mut mem = RedisMemory {
                client: l.c()?,
                script,
            };
            let lists = self
                .findex
                .lists(&mut mem, &kws)
                .await
                .map_err(findex_err)?;
            let size: BTreeMap<&[u8], crate::findex::List> =
                kws.iter().copied().zip(lists.iter().copied()).collect();
            // Query plan, per set: every result is in every list of its set and is re-checked
            // against its sealed record below, so reading the small lists is enough: the
            // smallest, plus any other list not much larger (within the read limit).
            let mut chosen: Vec<crate::findex::List> = Vec::new();
            let mut plan: Vec<Option<Vec<usize>>> = Vec::new();
            let mut total = 0u64;
            for set in sets {
                let mut mine: Vec<crate::findex::List> = set
                    .iter()
                    .filter_map(|k| size.get(k.as_bytes()).copied())
                    .collect();
                mine.sort_by_key(|l| (l.words, l.address));
                mine.dedup_by_key(|l| l.address);
                let Some(smallest) = mine.first().map(|l| l.words) else {
                    plan.push(None);
                    continue;
                };
                if smallest == 0 {
                    plan.push(None);
                    continue;
                }
                let budget = smallest.max(SMALL_LIST_WORDS);
                let mut idx = Vec::new();
                for (i, list) in mine.iter().enumerate() {
                    if list.words > budget {
                        break;
                    }
                    let pos = match chosen.iter().position(|c| c.address == list.address) {
                        Some(p) => Some(p),
                        // The smallest list is always read (over the read limit, Findex
                        // refuses the query); the others only while the total stays within it.
                        None if i == 0
                            || total.saturating_add(list.words) <= self.max_read_words =>
                        {
                            total = total.saturating_add(list.words);
                            chosen.push(*list);
                            Some(chosen.len() - 1)
                        }
                        None => None,
                    };
                    idx.extend(pos);
                }
                plan.push(Some(idx));
            }
            let hits = if chosen.is_empty() {
                Vec::new()
            } else {
                self.findex
                    .read_lists(&mut mem, &chosen)
                    .await
                    .map_err(findex_err)?
            };
            (chosen, plan, hits)
        };
        if hits.len() != chosen.len() {
            return Err(StoreError::Corrupt(
                "index answered the wrong number of lists",
            ));
        }
        // Intersect per set, smallest list first; candidates of all sets resolved together.
        let mut per_set: Vec<Vec<String>> = Vec::with_capacity(sets.len());
        let mut candidates: BTreeSet<String> = BTreeSet::new();
        for p in &plan {
            let Some(idx) = p else {
                per_set.push(Vec::new());
                continue;
            };
            let mut lists: Vec<&BTreeMap<Vec<u8>, u64>> =
                idx.iter().filter_map(|i| hits.get(*i)).collect();
            lists.sort_by_key(|h| h.len());
            let mine: Vec<String> = match lists.split_first() {
                Some((first, rest)) => first
                    .keys()
                    .filter(|u| rest.iter().all(|h| h.contains_key(*u)))
                    .filter_map(|u| String::from_utf8(u.clone()).ok())
                    .collect(),
                None => Vec::new(),
            };
            candidates.extend(mine.iter().cloned());
            per_set.push(mine);
        }
        if candidates.is_empty() {
            return Ok(out);
        }
        // uid → the keywords of its current live record: from the record cache, else read
        // (one MGET per chunk, all in one pipeline; no round trip when every candidate is cached).
        let mut live: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut candidates: Vec<String> = candidates.into_iter().collect();
        if let Some(cache) = &self.cache {
            candidates.retain(|u| {
                let id = self.sealer.object_id(u);
                match cache.lookup(&id, self.objects.get(&id)) {
                    Some((rec, _)) => {
                        let _ = live.insert(u.clone(), rec.keywords.clone());
                        false
                    }
                    None => true,
                }
            });
        }
        if candidates.is_empty() {
            return Ok(Self::matching(sets, per_set, &live, out));
        }
        let ticket = self.cache.as_ref().and_then(RecordCache::ticket);
        let ids: Vec<[u8; 16]> = candidates
            .iter()
            .map(|u| self.sealer.object_id(u))
            .collect();
        let before: Vec<u64> = ids.iter().map(|id| self.objects.get(id)).collect();
        let cmds: Vec<Command> = candidates
            .chunks(MGET_CHUNK)
            .map(|c| {
                let mut a = vec![b"MGET".to_vec()];
                a.extend(c.iter().map(|u| self.sealer.object_key(u)));
                Command::Plain(a)
            })
            .collect();
        let replies = l.c()?.pipeline(&cmds).await.map_err(|e| unavailable(&e))?;
        let checks = ids.chunks(MGET_CHUNK).zip(before.chunks(MGET_CHUNK));
        for ((r, chunk), (ids, before)) in replies
            .into_iter()
            .zip(candidates.chunks(MGET_CHUNK))
            .zip(checks)
        {
            let Reply::Array(vals) = r else {
                return Err(reply_error(&r));
            };
            if vals.len() != chunk.len() {
                return Err(StoreError::Corrupt(
                    "MGET answered the wrong number of values",
                ));
            }
            for (((v, uid), id), before) in vals.into_iter().zip(chunk).zip(ids).zip(before) {
                let Reply::Bulk(v) = v else { continue };
                let s = self.sealer.open(uid, &v).map_err(seal_err)?;
                self.observe(id, *before, &s)?;
                if let Stored::Live(rec, v) = s {
                    if let (Some(cache), Some(t)) = (&self.cache, ticket) {
                        cache.fill(id, t, &rec, v);
                    }
                    let _ = live.insert(uid.clone(), rec.keywords.clone());
                }
            }
        }
        Ok(Self::matching(sets, per_set, &live, out))
    }

    /// Each set's candidates whose live record carries every keyword of the set.
    fn matching(
        sets: &[Vec<&String>],
        per_set: Vec<Vec<String>>,
        live: &BTreeMap<String, Vec<String>>,
        mut out: Vec<Vec<String>>,
    ) -> Vec<Vec<String>> {
        for ((set, mine), slot) in sets.iter().zip(per_set).zip(out.iter_mut()) {
            for uid in mine {
                if let Some(k) = live.get(uid.as_str())
                    && set.iter().all(|w| k.contains(w))
                {
                    slot.push(uid);
                }
            }
        }
        out
    }
}

/// True if the database holds an object or an index word (`SCAN MATCH kms:[of]:*`, stopping at
/// the first key found; only run when the canary is missing).
async fn holds_data<T: Transport>(c: &mut Client<T>) -> Result<bool, OpenError> {
    let mut cursor = b"0".to_vec();
    loop {
        let r = c
            .request(&[b"SCAN", &cursor, b"MATCH", b"kms:[of]:*", b"COUNT", b"1000"])
            .await
            .map_err(OpenError::Unavailable)?;
        let Reply::Array(mut parts) = r else {
            return Err(OpenError::Backend("unexpected SCAN reply"));
        };
        let (Some(Reply::Array(batch)), Some(Reply::Bulk(next))) = (parts.pop(), parts.pop())
        else {
            return Err(OpenError::Backend("unexpected SCAN reply"));
        };
        if !batch.is_empty() {
            return Ok(true);
        }
        if next == b"0" {
            return Ok(false);
        }
        cursor = next;
    }
}

fn dedup(k: &[String]) -> Vec<&String> {
    let s: BTreeSet<&String> = k.iter().collect();
    s.into_iter().collect()
}
