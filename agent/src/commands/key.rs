//! `mc-agent key …`: create and rotate keyrings (`docs/format.md` §4.1). Prints key ids, never
//! keys.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use mc_core::crypto::keys::{create_keyring_file, rotate_keyring_file};
use mc_core::crypto::{Keyring, KeyringSource};

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a new keyring file holding one fresh random key (mode 0600). Refuses to overwrite.
    Generate {
        /// Where to write the keyring.
        #[arg(long, value_name = "FILE")]
        keyring: PathBuf,
    },
    /// Put a fresh key first in a keyring file (new data uses it); old keys stay to open old data.
    Rotate {
        #[arg(long, value_name = "FILE")]
        keyring: PathBuf,
    },
    /// Print the ids of a keyring's keys, primary first.
    List {
        #[arg(long, value_name = "FILE")]
        keyring: PathBuf,
    },
}

pub fn run(cmd: KeyCommand) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::Generate { keyring } => {
            let ring = create_keyring_file(&keyring)
                .with_context(|| format!("creating keyring {}", keyring.display()))?;
            println!(
                "created {} with primary key {}",
                keyring.display(),
                ring.primary().0
            );
            println!(
                "keep a copy of this file somewhere safe: without it the backups cannot be read"
            );
        }
        KeyCommand::Rotate { keyring } => {
            let ring = rotate_keyring_file(&keyring)
                .with_context(|| format!("rotating keyring {}", keyring.display()))?;
            println!(
                "new primary key {}; kept {}",
                ring.primary().0,
                ring.ids().count() - 1
            );
            println!("restart or reload agents to seal with the new key; keep the old keys while their data is retained");
        }
        KeyCommand::List { keyring } => {
            let ring = Keyring::load(&KeyringSource::File(keyring.clone()))?;
            for (i, id) in ring.ids().enumerate() {
                println!("{id}{}", if i == 0 { "  (primary)" } else { "" });
            }
        }
    }
    Ok(())
}
