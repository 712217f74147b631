//! Private MongoDB replica sets: mongod processes of a test's own, for what the shared set of
//! `scripts/services.sh` must not be used for (elections, a rolled-over oplog). Each test starts
//! its own [`PrivateReplSet`] on free loopback ports with data in a temporary directory, so these
//! tests run in parallel with each other and with the rest; dropping the set kills its mongods.
//!
//! # What mongod 6.0.5 does with a tiny oplog (measured while writing `tests/gap.rs`)
//!
//! - `--oplogSize` is an integer number of MB and must be at least 1: `0` is refused ("arg must
//!   be greater than 0"), `0.5` does not parse. 1 gives `local.oplog.rs` a `maxSize` of
//!   1048576 bytes. `replSetResizeOplog` refuses anything under 990 MB, so the size can only be
//!   chosen at start ([`ReplSetConfig::oplog_mb`]).
//! - The size is a target, not a cap. The oplog is cut in whole "stones" by a background thread,
//!   and never past the last checkpoint. With the default checkpoint interval (`--syncdelay`,
//!   60 s), a 1 MB oplog under a stream of 100 KiB inserts grew to ~50 MB and lost its oldest
//!   entry only after 60 s. With `--syncdelay 1` ([`ReplSetConfig::checkpoint_secs`]) the oldest
//!   entry is gone after ~1 s of such writes (600–800 single inserts; with `insert_many` of ten,
//!   ~2000 documents in 0.8 s, the oplog reaching ~100 MB). Once the writes stop, the next
//!   checkpoints cut it down to a few MB and it stays put: ~1.6 MB after single inserts,
//!   ~8–10 MB after batches of ten (stones follow write batches). Hence
//!   [`PrivateReplSet::wait_oplog_settled`] rather than a size threshold.
//!
//! # Elections
//!
//! Members have equal priority, so which node is primary moves around. `replSetStepDown` freezes
//! the old primary for its `stepDownSecs`, but with election hand-off (the default) a caught-up
//! secondary is elected at once: [`PrivateReplSet::step_down_primary`] sees the new primary
//! writable 30–40 ms after the command (once 380 ms, on a busy machine). It then unfreezes the
//! old primary (`replSetFreeze: 0`) so back-to-back step-downs always have two candidates
//! instead of waiting out the freeze. `electionTimeoutMillis` is lowered (2 s by default) so that
//! a killed primary is replaced quickly too. Two things to know when testing against elections:
//!
//! - A step-down need not end reads (since 4.2 it kills writes): a tailable cursor on the oplog
//!   may stay open on the deposed primary, which goes on serving the new primary's entries as
//!   a secondary (seen with `$currentOp` after a step-down; `tests/failover.rs` has the trap
//!   this sets).
//! - A newly elected primary's `hello` has no `lastWrite.majorityOpTime` until an entry of its
//!   own term is majority-committed; [`PrivateReplSet::majority_point`] waits for it.
//!
//! # Forcing an election: never a single attempt
//!
//! An election is a race with heartbeats, election timeouts and the machine's load: run once,
//! `replSetStepUp` failed with "Election failed" while the rest of the suite loaded both cores
//! (`tests/failover.rs`), though it always won on an idle machine. So tests force elections only
//! through the helpers here, which first wait for what the election needs and then retry it
//! within `PATIENCE` (60 s), panicking with every member's state and optime if it never succeeds:
//!
//! - [`PrivateReplSet::step_down_primary`]: any caught-up member takes over (the server waits for
//!   one and hands off);
//! - [`PrivateReplSet::step_up`]: this member, and no other, becomes primary. A voter refuses a
//!   candidate whose newest entry is older than its own, so the caller must make sure the voters
//!   it needs are not ahead ([`PrivateReplSet::stop_replication`] stops replication at a point
//!   where every member has the same history) and freeze (`replSetFreeze`) the members that must
//!   not win instead.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mongodb::bson::{doc, Bson, Document, Timestamp};
use mongodb::Client;

use crate::{mongod_bin, unique_name};

/// How a [`PrivateReplSet`] is started.
#[derive(Debug, Clone)]
pub struct ReplSetConfig {
    /// 1 or 3 (any count works; 3 is what elections need).
    pub nodes: usize,
    /// `--oplogSize` in MB (at least 1; see the module docs for how loosely it is kept).
    pub oplog_mb: u32,
    /// `--syncdelay`: seconds between checkpoints. The oplog is only ever truncated up to the last
    /// checkpoint, so tests that need it to roll over set 1. `None`: mongod's default (60).
    pub checkpoint_secs: Option<u32>,
    /// The replica set's `settings.electionTimeoutMillis`.
    pub election_timeout_ms: u32,
    /// The replica set's `settings.catchUpTimeoutMillis`: how long a new primary waits to
    /// fetch writes that only a deposed primary has. `None`: mongod's default (no limit).
    pub catch_up_timeout_ms: Option<u32>,
    /// `--setParameter enableTestCommands=1`, for `configureFailPoint` and the like.
    pub test_commands: bool,
}

impl Default for ReplSetConfig {
    fn default() -> Self {
        Self {
            nodes: 1,
            oplog_mb: 64,
            checkpoint_secs: None,
            election_timeout_ms: 2000,
            catch_up_timeout_ms: None,
            test_commands: false,
        }
    }
}

/// How long starting, electing and stepping down may take before the harness gives up.
const PATIENCE: Duration = Duration::from_secs(60);
/// Pause between two looks at a condition being polled.
const POLL: Duration = Duration::from_millis(25);

struct Node {
    port: u16,
    log: PathBuf,
    child: Option<Child>,
    /// A `directConnection=true` client with short timeouts (a dead node answers in seconds).
    client: Client,
}

/// A replica set of mongod child processes owned by one test.
pub struct PrivateReplSet {
    name: String,
    config: ReplSetConfig,
    nodes: Vec<Node>,
    /// Data and logs; kept (not deleted) when the test fails.
    dir: Option<tempfile::TempDir>,
}

impl PrivateReplSet {
    /// Starts the mongods, initiates the set and waits until it has a writable primary and every
    /// member is PRIMARY or SECONDARY.
    pub async fn start(config: ReplSetConfig) -> Self {
        assert!(config.nodes >= 1, "a replica set needs a member");
        assert!(
            config.oplog_mb >= 1,
            "mongod refuses --oplogSize below 1 (MB)"
        );
        let dir = tempfile::Builder::new()
            .prefix("mc-mongod-")
            .tempdir()
            .expect("a temporary directory for the replica set");
        let mut set = Self {
            name: unique_name("rs"),
            config,
            nodes: Vec::new(),
            dir: Some(dir),
        };
        for _ in 0..set.config.nodes {
            set.add_node().await;
        }
        set.initiate().await;
        set.wait_healthy().await;
        set
    }

    /// A 1-node set with the given oplog size, checkpointing every second so the oplog really
    /// rolls over at about that size.
    pub async fn single_rolling(oplog_mb: u32) -> Self {
        Self::start(ReplSetConfig {
            nodes: 1,
            oplog_mb,
            checkpoint_secs: Some(1),
            ..ReplSetConfig::default()
        })
        .await
    }

    /// A 3-node set with the default oplog size.
    pub async fn three() -> Self {
        Self::start(ReplSetConfig {
            nodes: 3,
            ..ReplSetConfig::default()
        })
        .await
    }

    fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .expect("the data directory lives as long as the set")
            .path()
    }

    /// The replica set's name (`--replSet`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The replica set URI naming every member.
    pub fn uri(&self) -> String {
        let hosts: Vec<String> = (0..self.nodes.len()).map(|i| self.host(i)).collect();
        format!("mongodb://{}/?replicaSet={}", hosts.join(","), self.name)
    }

    /// A URI of member `i` alone (`directConnection=true`).
    pub fn node_uri(&self, i: usize) -> String {
        format!(
            "mongodb://127.0.0.1:{}/?directConnection=true",
            self.nodes[i].port
        )
    }

    /// The process id of member `i`, or `None` while it is stopped (for CPU accounting).
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].child.as_ref().map(Child::id)
    }

    /// `127.0.0.1:<port>` of member `i`, as the replica set config names it.
    pub fn host(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[i].port)
    }

    /// Runs an admin command on member `i` alone, failing the test if it fails.
    pub async fn admin_command(&self, i: usize, command: Document) -> Document {
        self.db_command(i, "admin", command).await
    }

    /// Turns a fail point of member `i` on (`alwaysOn`) or off (needs
    /// [`ReplSetConfig::test_commands`]).
    pub async fn fail_point(&self, i: usize, name: &str, on: bool) {
        let mode = if on { "alwaysOn" } else { "off" };
        self.admin_command(i, doc! {"configureFailPoint": name, "mode": mode})
            .await;
    }

    /// A client connected directly to member `i` (short server-selection timeout).
    pub fn node_client(&self, i: usize) -> &Client {
        &self.nodes[i].client
    }

    /// Member `i`'s log file (mongod's stdout and stderr).
    pub fn log_path(&self, i: usize) -> &Path {
        &self.nodes[i].log
    }

    /// The member that currently is a writable primary, if any (asks each running member).
    pub async fn primary_index(&self) -> Option<usize> {
        for i in 0..self.nodes.len() {
            if self.is_writable_primary(i).await {
                return Some(i);
            }
        }
        None
    }

    /// Waits until some member other than `not` is a writable primary and returns it.
    pub async fn wait_primary(&self, not: Option<usize>) -> usize {
        let deadline = Instant::now() + PATIENCE;
        loop {
            for i in (0..self.nodes.len()).filter(|i| Some(*i) != not) {
                if self.is_writable_primary(i).await {
                    return i;
                }
            }
            self.check_deadline(deadline, "a writable primary");
            tokio::time::sleep(POLL).await;
        }
    }

    /// Whether member `i` runs, answers and says it is a writable primary.
    async fn is_writable_primary(&self, i: usize) -> bool {
        let node = &self.nodes[i];
        if node.child.is_none() {
            return false;
        }
        let admin = node.client.database("admin");
        match admin.run_command(doc! {"hello": 1}).await {
            Ok(h) => h.get_bool("isWritablePrimary").unwrap_or(false),
            Err(_) => false,
        }
    }

    /// Waits until there is a writable primary and every running member is PRIMARY or SECONDARY
    /// (so `w: majority` writes and elections work); returns the primary.
    pub async fn wait_healthy(&self) -> usize {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let primary = self.wait_primary(None).await;
            if self.nodes.len() == 1 {
                return primary;
            }
            let status = self.nodes[primary]
                .client
                .database("admin")
                .run_command(doc! {"replSetGetStatus": 1})
                .await;
            if let Ok(status) = status {
                let states: Vec<String> = status
                    .get_array("members")
                    .map(|ms| {
                        ms.iter()
                            .filter_map(Bson::as_document)
                            .map(|m| m.get_str("stateStr").unwrap_or("?").to_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                let running = self.nodes.iter().filter(|n| n.child.is_some()).count();
                let healthy = states
                    .iter()
                    .filter(|s| *s == "PRIMARY" || *s == "SECONDARY")
                    .count();
                if healthy >= running {
                    return primary;
                }
            }
            self.check_deadline(deadline, "every member PRIMARY or SECONDARY");
            tokio::time::sleep(POLL).await;
        }
    }

    /// Steps the primary down (`replSetStepDown` 10 s, with up to 5 s for a secondary to catch
    /// up) and waits until another member is a writable primary; returns `(old, new)`. The old
    /// primary is unfrozen again so it can win the next election.
    ///
    /// It starts from a quiet set (a writable primary, every member PRIMARY or SECONDARY: no
    /// election under way, see [`Self::wait_healthy`]). A step-down the server refuses (no
    /// secondary caught up in time on a busy machine, or the primary deposed meanwhile) is
    /// retried until the bound; the election that follows is the server's hand-off, or, should
    /// that fail, an ordinary one after the election timeout.
    pub async fn step_down_primary(&self) -> (usize, usize) {
        let deadline = Instant::now() + PATIENCE;
        let old = loop {
            let old = self.wait_healthy().await;
            let result = self.nodes[old]
                .client
                .database("admin")
                .run_command(doc! {"replSetStepDown": 10, "secondaryCatchUpPeriodSecs": 5})
                .await;
            // Since 4.2 the command answers ok; a network error (the connection closed as the
            // node stepped down) means the same.
            let refused = match result {
                Ok(_) => break old,
                Err(e) if is_connection_error(&e) => break old,
                Err(e) => e,
            };
            if !self.is_writable_primary(old).await {
                // Not primary any more: deposed by someone else's election, or stepped down
                // after all. Either way it did not stay primary; that is what was asked.
                break old;
            }
            if Instant::now() > deadline {
                panic!(
                    "replSetStepDown on member {old} refused for {PATIENCE:?}, last: {refused}\n{}",
                    self.members_summary().await
                );
            }
            tokio::time::sleep(POLL).await;
        };
        let new = self.wait_primary(Some(old)).await;
        self.admin_command(old, doc! {"replSetFreeze": 0}).await;
        (old, new)
    }

    /// Makes member `i` the writable primary with `replSetStepUp`: the one way tests elect a
    /// chosen member.
    ///
    /// An election can fail for reasons that pass: another election under way (a member's
    /// election timeout fired), a vote request crossing a newer term, a machine too busy to
    /// answer in time. So this retries until `i` is a writable primary, for up to `PATIENCE`
    /// (60 s), then panics with the last refusal and every member's state and optime. What it
    /// cannot fix is a candidate that cannot win: a voter refuses a candidate whose newest entry
    /// is older than its own, and an unfrozen member may win instead (see the module docs).
    pub async fn step_up(&self, i: usize) {
        let deadline = Instant::now() + PATIENCE;
        let mut attempts = 0u32;
        loop {
            if self.is_writable_primary(i).await {
                return;
            }
            attempts += 1;
            let result = self.nodes[i]
                .client
                .database("admin")
                .run_command(doc! {"replSetStepUp": 1})
                .await;
            let last = match result {
                // Won. A new primary becomes writable once it has caught up and drained what
                // it had fetched; it may also be deposed again in that time, then retry.
                Ok(_) => loop {
                    let hello = self.nodes[i]
                        .client
                        .database("admin")
                        .run_command(doc! {"hello": 1})
                        .await
                        .unwrap_or_default();
                    if hello.get_bool("isWritablePrimary").unwrap_or(false) {
                        return;
                    }
                    if hello.get_bool("secondary").unwrap_or(false) || Instant::now() > deadline {
                        break format!("won, but not a writable primary: {hello}");
                    }
                    tokio::time::sleep(POLL).await;
                },
                Err(e) => e.to_string(),
            };
            if Instant::now() > deadline {
                panic!(
                    "replSetStepUp: member {i} not elected within {PATIENCE:?} ({attempts} \
                     attempts, last: {last})\n{}\n{}",
                    self.members_summary().await,
                    self.log_tails(20)
                );
            }
            // An election that failed leaves its term behind; give the set a heartbeat's time
            // to settle on it before the next attempt.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Stops replication on every member (fail point `stopReplProducer`, needs
    /// [`ReplSetConfig::test_commands`]) at a point where every member holds the same history:
    /// each secondary has applied the primary's newest entry and its fetcher is blocked at the
    /// fail point (`waitForFailPoint`, not a sleep), so what the primary writes from now on
    /// stays its own, and no member is ahead of another. Returns the primary.
    ///
    /// If the primary wrote meanwhile (its periodic no-op, say), a secondary may have fetched
    /// more than another; replication is then let go and stopped again, until the bound.
    pub async fn stop_replication(&self) -> usize {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let primary = self.wait_healthy().await;
            let secondaries: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| i != primary && self.nodes[i].child.is_some())
                .collect();
            // Caught up first: every secondary at the primary's newest entry.
            let target = self.last_write(primary).await;
            let mut behind = Vec::new();
            for &i in &secondaries {
                if self.last_write(i).await != target {
                    behind.push(i);
                }
            }
            if !behind.is_empty() {
                self.check_deadline(
                    deadline,
                    &format!("members {behind:?} caught up with primary {primary}"),
                );
                tokio::time::sleep(POLL).await;
                continue;
            }
            // Block every fetcher; a primary has none running, so only secondaries are waited
            // for (a fetch in flight ends within its await time, about half the election
            // timeout).
            self.fail_point(primary, "stopReplProducer", true).await;
            for &i in &secondaries {
                let set = self
                    .admin_command(
                        i,
                        doc! {"configureFailPoint": "stopReplProducer", "mode": "alwaysOn"},
                    )
                    .await;
                let entered = number(&set, "count") + 1;
                self.admin_command(
                    i,
                    doc! {
                        "waitForFailPoint": "stopReplProducer",
                        "timesEntered": entered,
                        "maxTimeMS": PATIENCE.as_millis() as i64,
                    },
                )
                .await;
            }
            // Nothing written in between: every member stopped at `target`.
            let mut same = self.last_write(primary).await == target;
            for &i in &secondaries {
                same &= self.last_write(i).await == target;
            }
            if same {
                return primary;
            }
            for i in std::iter::once(primary).chain(secondaries) {
                self.fail_point(i, "stopReplProducer", false).await;
            }
            self.check_deadline(deadline, "replication stopped with every member alike");
        }
    }

    /// Kills member `i` with SIGKILL (as a crash would) and reaps it.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts member `i` again on its port and data (after [`Self::kill_node`]) and waits until
    /// it accepts connections. It rejoins the set by itself; [`Self::wait_healthy`] waits for it.
    pub async fn restart_node(&mut self, i: usize) {
        assert!(self.nodes[i].child.is_none(), "member {i} is running");
        let port = self.nodes[i].port;
        let child = self.spawn(i, port).expect("spawn mongod");
        self.nodes[i].child = Some(child);
        if let Err(e) = self.wait_listening(i).await {
            panic!("member {i} did not come back: {e}");
        }
    }

    /// `hello.lastWrite.majorityOpTime.ts` of member `i`: its view of the majority commit point.
    /// A newly elected primary reports none until an entry of its own term is majority-committed;
    /// this waits for it.
    pub async fn majority_point(&self, i: usize) -> Timestamp {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let hello = self.hello(i).await;
            let majority = hello
                .get_document("lastWrite")
                .and_then(|w| w.get_document("majorityOpTime"))
                .and_then(|o| o.get_timestamp("ts"));
            if let Ok(ts) = majority {
                return ts;
            }
            self.check_deadline(deadline, &format!("majority point on member {i}"));
            tokio::time::sleep(POLL).await;
        }
    }

    /// `hello.lastWrite.opTime.ts` of member `i`: the newest entry in its oplog.
    pub async fn last_write(&self, i: usize) -> Timestamp {
        let hello = self.hello(i).await;
        hello
            .get_document("lastWrite")
            .and_then(|w| w.get_document("opTime"))
            .and_then(|o| o.get_timestamp("ts"))
            .unwrap_or_else(|e| panic!("member {i} reports no last write ({e}): {hello}"))
    }

    /// The oldest entry still in member `i`'s oplog.
    pub async fn oplog_oldest(&self, i: usize) -> Timestamp {
        let first = self.nodes[i]
            .client
            .database("local")
            .collection::<Document>("oplog.rs")
            .find_one(doc! {})
            .sort(doc! {"$natural": 1})
            .projection(doc! {"ts": 1})
            .await
            .unwrap_or_else(|e| panic!("reading member {i}'s oplog: {e}"))
            .expect("the oplog of an initiated member is never empty");
        first.get_timestamp("ts").expect("oplog entries have a ts")
    }

    /// `(size, maxSize)` in bytes of member `i`'s oplog (`collStats`).
    pub async fn oplog_size(&self, i: usize) -> (i64, i64) {
        let stats = self
            .db_command(i, "local", doc! {"collStats": "oplog.rs"})
            .await;
        (number(&stats, "size"), number(&stats, "maxSize"))
    }

    /// Checkpoints member `i` has taken (or skipped, having nothing to write) since it started.
    pub async fn checkpoints(&self, i: usize) -> i64 {
        let status = self.admin_command(i, doc! {"serverStatus": 1}).await;
        let txn = status
            .get_document("wiredTiger")
            .and_then(|w| w.get_document("transaction"))
            .unwrap_or_else(|e| panic!("serverStatus.wiredTiger.transaction of member {i}: {e}"));
        number(txn, "transaction checkpoints")
            + number(
                txn,
                "transaction checkpoints skipped because database was clean",
            )
    }

    /// Waits until member `i`'s oplog has stopped shrinking and returns its oldest entry.
    ///
    /// The oplog is cut lazily, after checkpoints: just after a burst of writes it may hold many
    /// times its size, cut down in steps over the next checkpoints. Settled means its oldest
    /// entry stayed the same across two whole checkpoints; without new writes, it stays so.
    pub async fn wait_oplog_settled(&self, i: usize) -> Timestamp {
        let deadline = Instant::now() + PATIENCE;
        let mut oldest = self.oplog_oldest(i).await;
        let mut since = self.checkpoints(i).await;
        loop {
            tokio::time::sleep(POLL).await;
            let now_oldest = self.oplog_oldest(i).await;
            let checkpoints = self.checkpoints(i).await;
            if now_oldest != oldest {
                (oldest, since) = (now_oldest, checkpoints);
            } else if checkpoints >= since + 2 {
                return oldest;
            }
            self.check_deadline(deadline, "settled oplog");
        }
    }

    async fn db_command(&self, i: usize, db: &str, command: Document) -> Document {
        self.nodes[i]
            .client
            .database(db)
            .run_command(command.clone())
            .await
            .unwrap_or_else(|e| panic!("{command} on member {i}: {e}"))
    }

    async fn hello(&self, i: usize) -> Document {
        self.nodes[i]
            .client
            .database("admin")
            .run_command(doc! {"hello": 1})
            .await
            .unwrap_or_else(|e| panic!("hello to member {i}: {e}"))
    }

    /// Starts the next member on a free port, retrying with another port if one was taken in
    /// the moment between finding it free and mongod binding it.
    async fn add_node(&mut self) {
        let i = self.nodes.len();
        std::fs::create_dir_all(self.dir().join(format!("node{i}"))).expect("create the dbpath");
        let log = self.dir().join(format!("node{i}.log"));
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let logged_before = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
            let child = self.spawn(i, port).expect("spawn mongod");
            self.nodes.push(Node {
                port,
                log: log.clone(),
                child: Some(child),
                client: direct_client(port).await,
            });
            let Err(e) = self.wait_listening(i).await else {
                return;
            };
            self.kill_node(i);
            self.nodes.pop();
            let this_attempt = std::fs::read(&log).unwrap_or_default();
            let taken =
                String::from_utf8_lossy(&this_attempt[logged_before.min(this_attempt.len())..])
                    .contains("Address already in use");
            if !taken {
                panic!("mongod member {i} did not start: {e}");
            }
            last_error = e;
        }
        panic!("mongod member {i} found no free port: {last_error}");
    }

    fn spawn(&self, i: usize, port: u16) -> std::io::Result<Child> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir().join(format!("node{i}.log")))?;
        let mut cmd = Command::new(mongod_bin());
        cmd.arg("--replSet")
            .arg(&self.name)
            .args(["--bind_ip", "127.0.0.1", "--port", &port.to_string()])
            .arg("--dbpath")
            .arg(self.dir().join(format!("node{i}")))
            .arg("--nounixsocket")
            .args(["--oplogSize", &self.config.oplog_mb.to_string()])
            .args(["--wiredTigerCacheSizeGB", "0.25"])
            .args(["--setParameter", "diagnosticDataCollectionEnabled=false"])
            .args([
                "--wiredTigerEngineConfigString",
                "log=(file_max=10MB,prealloc=false)",
            ]);
        if self.config.test_commands {
            cmd.args(["--setParameter", "enableTestCommands=1"]);
        }
        if let Some(secs) = self.config.checkpoint_secs {
            cmd.args(["--syncdelay", &secs.to_string()]);
        }
        // No --fork: the child stays ours, so Drop can kill it.
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
    }

    /// Waits until member `i` accepts TCP connections, or reports why it exited.
    async fn wait_listening(&mut self, i: usize) -> Result<(), String> {
        let deadline = Instant::now() + PATIENCE;
        let port = self.nodes[i].port;
        loop {
            let child = self.nodes[i].child.as_mut().expect("member is running");
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!(
                    "mongod exited with {status}; log:\n{}",
                    log_tail(&self.nodes[i].log, 20)
                ));
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("not listening on {port} after {PATIENCE:?}"));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn initiate(&self) {
        // Equal priorities: any member may win an election.
        let members: Vec<Bson> = (0..self.nodes.len())
            .map(|i| Bson::Document(doc! {"_id": i as i32, "host": self.host(i), "priority": 1}))
            .collect();
        let mut settings = doc! {"electionTimeoutMillis": self.config.election_timeout_ms as i32};
        if let Some(ms) = self.config.catch_up_timeout_ms {
            settings.insert("catchUpTimeoutMillis", ms as i32);
        }
        let config = doc! {"_id": &self.name, "members": members, "settings": settings};
        let deadline = Instant::now() + PATIENCE;
        loop {
            let result = self.nodes[0]
                .client
                .database("admin")
                .run_command(doc! {"replSetInitiate": config.clone()})
                .await;
            match result {
                Ok(_) => return,
                // The driver may not have discovered the freshly started node yet.
                Err(e) if is_connection_error(&e) => {
                    self.check_deadline(deadline, &format!("replSetInitiate ({e})"));
                    tokio::time::sleep(POLL).await;
                }
                Err(e) => panic!(
                    "replSetInitiate failed: {e}; log:\n{}",
                    log_tail(&self.nodes[0].log, 20)
                ),
            }
        }
    }

    /// One line per member: its state and newest entry as the first member that answers
    /// `replSetGetStatus` sees them, then what each running member says of itself.
    async fn members_summary(&self) -> String {
        let mut out = Vec::new();
        for (i, node) in self.nodes.iter().enumerate() {
            if node.child.is_none() {
                out.push(format!("member {i}: not running"));
                continue;
            }
            let status = node
                .client
                .database("admin")
                .run_command(doc! {"replSetGetStatus": 1})
                .await;
            match status {
                Ok(status) => {
                    let term = status.get("term").cloned().unwrap_or(Bson::Null);
                    let me = status
                        .get_array("members")
                        .ok()
                        .and_then(|ms| {
                            ms.iter()
                                .filter_map(Bson::as_document)
                                .find(|m| m.get_bool("self").unwrap_or(false))
                        })
                        .map(|m| {
                            format!(
                                "{} optime {}",
                                m.get_str("stateStr").unwrap_or("?"),
                                m.get("optime").cloned().unwrap_or(Bson::Null)
                            )
                        })
                        .unwrap_or_default();
                    out.push(format!("member {i}: {me}, term {term}"));
                }
                Err(e) => out.push(format!("member {i}: replSetGetStatus failed: {e}")),
            }
        }
        out.join("\n")
    }

    #[track_caller]
    fn check_deadline(&self, deadline: Instant, what: &str) {
        if Instant::now() > deadline {
            panic!(
                "replica set {}: no {what} after {PATIENCE:?}\n{}",
                self.name,
                self.log_tails(20)
            );
        }
    }

    fn log_tails(&self, lines: usize) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                format!(
                    "--- member {i} ({}):\n{}",
                    n.log.display(),
                    log_tail(&n.log, lines)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for PrivateReplSet {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
        if std::thread::panicking() {
            eprintln!(
                "replica set {}, last log lines:\n{}",
                self.name,
                self.log_tails(15)
            );
            if let Some(dir) = self.dir.take() {
                eprintln!(
                    "its data and full logs are kept in {}",
                    dir.keep().display()
                );
            }
        }
    }
}

/// A numeric field of a server answer, whatever BSON number type it came as.
fn number(doc: &Document, key: &str) -> i64 {
    match doc.get(key) {
        Some(Bson::Int32(v)) => i64::from(*v),
        Some(Bson::Int64(v)) => *v,
        Some(Bson::Double(v)) => *v as i64,
        other => panic!("{key} is {other:?}"),
    }
}

/// Whether the error is about reaching the server rather than an answer from it.
pub fn is_connection_error(e: &mongodb::error::Error) -> bool {
    use mongodb::error::ErrorKind;
    matches!(
        *e.kind,
        ErrorKind::Io(_)
            | ErrorKind::ConnectionPoolCleared { .. }
            | ErrorKind::ServerSelection { .. }
    )
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind a free loopback port")
}

async fn direct_client(port: u16) -> Client {
    let uri = format!(
        "mongodb://127.0.0.1:{port}/?directConnection=true&serverSelectionTimeoutMS=2000&connectTimeoutMS=2000"
    );
    Client::with_uri_str(&uri)
        .await
        .unwrap_or_else(|e| panic!("client for {uri}: {e}"))
}

/// The last `n` lines of a log file, each cut to a readable length.
fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.chars().take(400).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}
