//! `mc-agent init`: create a repository (its `config` object) at a URL, or check an existing one.

use mc_core::cli::RepoOpts;

pub async fn run(repo: &RepoOpts) -> anyhow::Result<()> {
    let repository = repo.open(true).await?;
    let config = repository.config().await?;
    println!(
        "repository {} ready (id {}, format {}, created {})",
        repository.store().describe(),
        config.id,
        config.format,
        config.created
    );
    Ok(())
}
