//! A private SeaweedFS (`weed mini`) for tests that freeze or kill their object store: started
//! like `scripts/services.sh` starts the shared one (same binary, same safety flags, the same
//! test credentials), on free ports of its own, in its own process group so that
//! [`PrivateSeaweed::freeze`] (SIGSTOP) and [`PrivateSeaweed::thaw`] (SIGCONT) reach all of it,
//! and [`PrivateSeaweed::stop`] (SIGKILL: connections refused) and [`PrivateSeaweed::restart`]
//! (the same ports and data) take it away and bring it back. Never freeze or stop the shared
//! one: other tests use it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::S3Env;

/// Where `scripts/services.sh` installs `weed`: `MC_TEST_WEED_BIN`, else
/// `$MC_CACHE_DIR/venv/bin/weed`, else `~/.cache/mc-backup/venv/bin/weed`.
pub fn weed_bin() -> PathBuf {
    if let Ok(bin) = std::env::var("MC_TEST_WEED_BIN") {
        return bin.into();
    }
    let cache = std::env::var("MC_CACHE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/mc-backup")
        });
    let bin = cache.join("venv/bin/weed");
    assert!(
        bin.exists(),
        "{} does not exist; install the services first: scripts/services.sh up",
        bin.display()
    );
    bin
}

/// Four ports that are free, each with its gRPC twin (+10000) free too.
fn free_ports() -> [u16; 4] {
    let mut ports = [0u16; 4];
    let mut n = 0;
    while n < 4 {
        let candidate = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        if candidate > 55000 || ports[..n].contains(&candidate) {
            continue;
        }
        let twin = std::net::TcpListener::bind(("127.0.0.1", candidate + 10000)).is_ok();
        if twin {
            ports[n] = candidate;
            n += 1;
        }
    }
    ports
}

/// A `weed mini` owned by one test; killed (after a SIGCONT) when dropped.
pub struct PrivateSeaweed {
    child: Child,
    pub s3_port: u16,
    /// master, volume, filer, s3.
    ports: [u16; 4],
    dir: tempfile::TempDir,
}

impl PrivateSeaweed {
    /// Starts it and waits (up to 60 s) until its S3 port answers.
    pub async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mc-weed-")
            .tempdir()
            .expect("a temp dir");
        let env = S3Env::from_env();
        std::fs::write(
            dir.path().join("s3.json"),
            format!(
                r#"{{"identities":[{{"name":"ci","credentials":[{{"accessKey":"{}","secretKey":"{}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#,
                env.access_key, env.secret_key
            ),
        )
        .expect("write s3.json");
        let ports = free_ports();
        let child = Self::spawn(dir.path(), ports);
        let me = Self {
            child,
            s3_port: ports[3],
            ports,
            dir,
        };
        me.await_answer().await;
        me
    }

    /// Starts `weed mini` on `ports` with its data in `dir`, in a process group of its own.
    fn spawn(dir: &std::path::Path, ports: [u16; 4]) -> Child {
        let [master, volume, filer, s3] = ports;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("weed.log"))
            .expect("weed.log");
        let mut cmd = Command::new(weed_bin());
        cmd.arg("mini")
            .arg(format!("-dir={}", dir.display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-s3.port={s3}"))
            .args([
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-webdav=false",
                "-admin.ui=false",
                "-master.telemetry=false",
                "-s3.allowDeleteBucketNotEmpty=false",
                "-s3.autoCreateBucket=false",
                "-volume.max=200",
                "-master.volumeSizeLimitMB=64",
            ])
            .arg(format!("-s3.config={}", dir.join("s3.json").display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.spawn().expect("start weed mini")
    }

    /// Waits (up to 60 s) until the S3 port answers.
    async fn await_answer(&self) {
        let t0 = Instant::now();
        while !self.answers() {
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "private SeaweedFS did not answer on {} within 60 s; log:\n{}",
                self.s3_port,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL of the whole process group: connections are refused from now on (until
    /// [`PrivateSeaweed::restart`]); the data stays in its directory.
    pub fn stop(&mut self) {
        self.signal("-KILL");
        let _ = self.child.wait();
    }

    /// Starts it again after [`PrivateSeaweed::stop`], on the same ports and data, and waits
    /// until its S3 port answers.
    pub async fn restart(&mut self) {
        self.child = Self::spawn(self.dir.path(), self.ports);
        self.await_answer().await;
    }

    /// `http://127.0.0.1:<s3 port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// An S3 client of this server with the test credentials.
    pub fn client(&self) -> aws_sdk_s3::Client {
        let env = S3Env::from_env();
        let creds = aws_sdk_s3::config::Credentials::new(
            env.access_key,
            env.secret_key,
            None,
            None,
            "mc-test",
        );
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(env.region))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .credentials_provider(creds)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// Creates a bucket (retrying while the new server settles) and returns its name.
    pub async fn bucket(&self, prefix: &str) -> String {
        let name = crate::unique_name(prefix);
        let client = self.client();
        let t0 = Instant::now();
        loop {
            match client.create_bucket().bucket(&name).send().await {
                Ok(_) => return name,
                Err(e) if t0.elapsed() < Duration::from_secs(30) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("cannot create bucket {name}: {e:?}\n{}", self.log()),
            }
        }
    }

    /// True when `GET /` answers 403 or 200 within a second.
    pub fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.s3_port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if write!(s, "GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
            return false;
        }
        let mut head = [0u8; 12];
        if s.read_exact(&mut head).is_err() {
            return false;
        }
        let text = String::from_utf8_lossy(&head);
        text.contains(" 403") || text.contains(" 200")
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, "--", &format!("-{}", self.child.id())])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {sig} of the private SeaweedFS");
    }

    /// SIGSTOP: connections stay open, nothing answers.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default()
    }
}

impl Drop for PrivateSeaweed {
    fn drop(&mut self) {
        let pgid = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-CONT", "--", &pgid]).status();
        let _ = Command::new("kill").args(["-KILL", "--", &pgid]).status();
        let _ = self.child.wait();
    }
}
