//! Command-line options shared by `mc-agent` and `mc-restore`, flattened into each binary's
//! clap parser so both speak the same flags.

use clap::Args;

use crate::logging::LogFormat;

/// Global options of every mc-backup binary.
#[derive(Debug, Clone, Args)]
pub struct GlobalOpts {
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Human, global = true, env = "MC_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Default log level when RUST_LOG is not set (error, warn, info, debug, trace).
    #[arg(long, default_value = "info", global = true, env = "MC_LOG_LEVEL")]
    pub log_level: String,
}

impl GlobalOpts {
    /// Installs logging as these options say.
    pub fn init_logging(&self) {
        crate::logging::init(self.log_format, &self.log_level);
    }
}

/// Parses the process arguments like `T::parse()`, but reports a bad command line as one line on
/// stderr (`mc-agent: error: unexpected argument '--x' found; try --help`) and exit code 2.
/// `--help` and `--version` print to stdout and exit 0 as usual.
pub fn parse_or_exit<T: clap::Parser>() -> T {
    match T::try_parse() {
        Ok(parsed) => parsed,
        Err(err) => {
            use clap::error::ErrorKind;
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                // Help asked for without a subcommand is still a usage error for scripts.
                let code =
                    i32::from(err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand)
                        * 2;
                let _ = err.print();
                std::process::exit(code);
            }
            let bin = T::command().get_name().to_string();
            eprintln!("{bin}: {}", one_line(&err.to_string()));
            std::process::exit(2);
        }
    }
}

/// The first meaningful line of clap's message plus a pointer to `--help`.
fn one_line(message: &str) -> String {
    let mut lines = message.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or("invalid arguments");
    // "the following required arguments were not provided:" names them on the next lines.
    if first.ends_with(':') {
        let named: Vec<&str> = lines.take_while(|l| !l.starts_with("Usage:")).collect();
        if !named.is_empty() {
            return format!("{first} {}; try --help", named.join(", "));
        }
    }
    format!("{first}; try --help")
}

/// Prints a fatal error of a binary as one line (with its causes joined by `: `) and returns the
/// exit code to use. Keeps `main` functions to a line.
pub fn report_fatal(bin: &str, err: &anyhow::Error) -> i32 {
    eprintln!("{bin}: error: {}", error_text(err));
    1
}

/// An error and its causes on one line, each said once: many of our errors already include their
/// cause in their own message (`"loading the snapshot: {0}"` with the cause as `source()`), and
/// printing the chain as well (`{:#}`) would repeat it. A cause whose text the line already
/// holds is left out.
pub fn error_text(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::{error_text, one_line};

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("loading the snapshot: {0}")]
        struct Load(#[source] std::io::Error);
        let err = anyhow::Error::new(Load(std::io::Error::other("part 3 is truncated")))
            .context("restore of source s did not complete");
        assert_eq!(
            error_text(&err),
            "restore of source s did not complete: loading the snapshot: part 3 is truncated"
        );
        // A cause the message does not include is still shown.
        let err = anyhow::Error::new(std::io::Error::other("connection refused")).context("x");
        assert_eq!(error_text(&err), "x: connection refused");
    }

    #[test]
    fn clap_errors_become_one_line() {
        let msg = "error: unexpected argument '--x' found\n\nUsage: mc-agent <COMMAND>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(msg),
            "error: unexpected argument '--x' found; try --help"
        );
    }

    #[test]
    fn missing_arguments_are_named() {
        let msg = "error: the following required arguments were not provided:\n  --policy <FILE>\n\nUsage: mc-agent run --policy <FILE>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(msg),
            "error: the following required arguments were not provided: --policy <FILE>; try --help"
        );
    }
}

/// Where the repository is and which keyring opens it; shared by every command that reads or
/// writes a repository.
#[derive(Debug, Clone, Args)]
pub struct RepoOpts {
    /// Repository location: a path, file:///path, or s3://bucket/prefix?endpoint=…&region=…
    #[arg(long, env = "MC_REPO", value_name = "URL")]
    pub repo: String,

    #[command(flatten)]
    pub keys: KeyringOpts,
}

/// Which keyring opens a repository named on the command line.
#[derive(Debug, Clone, Args)]
pub struct KeyringOpts {
    /// Keyring file (one base64 key per line, primary first), e.g. a mounted Secret.
    #[arg(
        long,
        env = "MC_KEYRING_FILE",
        value_name = "FILE",
        conflicts_with = "keyring_env"
    )]
    pub keyring: Option<std::path::PathBuf>,

    /// Name of an environment variable holding the keyring instead of a file.
    #[arg(long, value_name = "VAR")]
    pub keyring_env: Option<String>,
}

impl KeyringOpts {
    /// The keyring source these options name.
    pub fn keyring_source(&self) -> anyhow::Result<crate::crypto::KeyringSource> {
        use crate::crypto::KeyringSource;
        match (&self.keyring, &self.keyring_env) {
            (Some(path), _) => Ok(KeyringSource::File(path.clone())),
            (None, Some(var)) => Ok(KeyringSource::Env(var.clone())),
            (None, None) => anyhow::bail!(
                "no keyring given: pass --keyring FILE (or set MC_KEYRING_FILE) or --keyring-env VAR"
            ),
        }
    }
}

impl RepoOpts {
    /// Loads the keyring and opens the repository (which must exist unless `create`).
    pub async fn open(&self, create: bool) -> anyhow::Result<crate::catalog::Repository> {
        use anyhow::Context;
        let source = self.keys.keyring_source()?;
        let keyring = crate::crypto::Keyring::load(&source)?;
        let url = crate::storage::RepoUrl::parse(&self.repo)?;
        crate::catalog::Repository::open(&url, keyring, create)
            .await
            .with_context(|| format!("opening repository {url}"))
    }
}

/// Which repository and source a reading command works on: a policy file (what `mc-agent run`
/// uses: repository, keyring and source in one), or a repository URL and keyring given apart.
#[derive(Debug, Clone, Args)]
pub struct SourceOpts {
    /// Backup policy naming the repository, keyring and source (as `mc-agent run --policy`).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["repo", "keyring", "keyring_env"])]
    pub policy: Option<std::path::PathBuf>,

    /// Repository location instead of a policy: a path, file:///path, or s3://bucket/prefix?…
    #[arg(long, env = "MC_REPO", value_name = "URL")]
    pub repo: Option<String>,

    /// The keyring (with --repo).
    #[command(flatten)]
    pub keys: KeyringOpts,

    /// Source id in the repository (default: the policy's, or the repository's only source).
    #[arg(long, value_name = "ID")]
    pub source: Option<String>,
}

impl SourceOpts {
    /// Opens the repository and names the source to read.
    pub async fn open(&self) -> anyhow::Result<(crate::catalog::Repository, String)> {
        use anyhow::Context;
        let (repo, policy_source) = match (&self.policy, &self.repo) {
            (Some(path), _) => {
                let policy = crate::policy::Policy::load(path)?;
                let url = policy.repository_url()?;
                let repo = crate::catalog::Repository::open(&url, policy.keyring()?, false)
                    .await
                    .with_context(|| format!("opening repository {url}"))?;
                (repo, Some(policy.source.id.clone()))
            }
            (None, Some(repo)) => {
                let opts = RepoOpts {
                    repo: repo.clone(),
                    keys: self.keys.clone(),
                };
                (opts.open(false).await?, None)
            }
            (None, None) => anyhow::bail!(
                "no repository given: pass --policy FILE, or --repo URL with --keyring FILE"
            ),
        };
        let source = match (&self.source, policy_source) {
            (Some(s), _) => s.clone(),
            (None, Some(s)) => s,
            (None, None) => {
                let sources = crate::catalog::list_sources(&repo).await?;
                match sources.as_slice() {
                    [only] => only.clone(),
                    [] => anyhow::bail!(
                        "repository {} holds no source yet (has an agent written to it?)",
                        repo.store().describe()
                    ),
                    many => anyhow::bail!(
                        "repository {} holds several sources ({}): pass --source ID",
                        repo.store().describe(),
                        many.join(", ")
                    ),
                }
            }
        };
        Ok((repo, source))
    }
}
