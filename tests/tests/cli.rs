//! The binaries' command-line contract: `--help`, `--version`, and a one-line error with a
//! non-zero exit on bad arguments.

use std::process::Command;

use mc_tests::workspace_bin;

fn run(bin: &str, args: &[&str]) -> std::process::Output {
    Command::new(workspace_bin(bin))
        .args(args)
        .output()
        .expect("run the binary")
}

#[test]
fn help_and_version_exit_zero() {
    for bin in ["mc-agent", "mc-restore"] {
        let help = run(bin, &["--help"]);
        assert!(help.status.success(), "{bin} --help: {help:?}");
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(text.contains("Usage:"), "{bin} --help prints usage: {text}");
        assert!(
            text.contains("--log-format"),
            "{bin} --help lists --log-format: {text}"
        );

        let version = run(bin, &["--version"]);
        assert!(version.status.success());
        let text = String::from_utf8_lossy(&version.stdout);
        assert_eq!(text.trim(), format!("{bin} {}", env!("CARGO_PKG_VERSION")));
    }
}

#[test]
fn bad_arguments_give_one_line_and_exit_2() {
    for bin in ["mc-agent", "mc-restore"] {
        let out = run(bin, &["--no-such-flag"]);
        assert_eq!(out.status.code(), Some(2), "{bin}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{bin} prints one line: {err:?}"
        );
        assert!(
            err.contains("--no-such-flag"),
            "{bin} names the bad argument: {err}"
        );

        let out = run(bin, &["--log-format", "xml", "version"]);
        assert_eq!(out.status.code(), Some(2), "{bin}: {out:?}");
    }
}

#[test]
fn no_subcommand_prints_help_and_fails() {
    for bin in ["mc-agent", "mc-restore"] {
        let out = run(bin, &[]);
        assert_eq!(out.status.code(), Some(2), "{bin}: {out:?}");
    }
}
