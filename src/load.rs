//! Settings loading: defaults < file < environment < flags, merged by the
//! `config` crate and validated once into `Settings`.
//!
//! Environment variables use `__` between the prefix, the section and the
//! key (`SUNDIAL__BROKER__URL`, `SUNDIAL__TOPOLOGY__SHARDS`): with config
//! 0.15 a single `_` separator silently ignores keys that contain `_`.

use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use sundial_core::settings::{RawSettings, Settings};

use crate::cli::GlobalFlags;

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_FILE: &str = "sundial.toml";

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read settings: {0}")]
    Config(#[from] config::ConfigError),
    #[error("settings file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid setting {0}")]
    Invalid(#[from] sundial_core::ValidationError),
}

/// Merges every source into raw settings (not yet validated).
pub fn load_raw(flags: &GlobalFlags) -> Result<RawSettings, LoadError> {
    let defaults = Config::try_from(&RawSettings::default())?;
    let mut b = Config::builder().add_source(defaults);
    match &flags.config {
        Some(path) => {
            if !path.exists() {
                return Err(LoadError::MissingFile(path.clone()));
            }
            b = b.add_source(File::from(path.as_path()).format(FileFormat::Toml));
        }
        None if Path::new(DEFAULT_FILE).exists() => {
            b = b.add_source(File::new(DEFAULT_FILE, FileFormat::Toml));
        }
        None => {}
    }
    b = b.add_source(
        Environment::with_prefix("SUNDIAL")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("broker.urls")
            .with_list_parse_key("topology.pools")
            .with_list_parse_key("topology.retry_tiers")
            .with_list_parse_key("worker.shell.allow"),
    );
    b = b
        .set_override_option("broker.url", flags.broker.clone())?
        // The flag names the one broker to use: it replaces a list too.
        .set_override_option("broker.urls", flags.broker.clone().map(|u| vec![u]))?
        .set_override_option("topology.prefix", flags.prefix.clone())?
        .set_override_option("log.format", flags.log_format.clone())?
        .set_override_option("http.listen", flags.http.clone())?
        .set_override_option("worker.pool", flags.worker_pool.clone())?
        .set_override_option(
            "worker.concurrency",
            flags.worker_concurrency.map(i64::from),
        )?;
    Ok(b.build()?.try_deserialize::<RawSettings>()?)
}

/// Loads and validates.
pub fn load(flags: &GlobalFlags) -> Result<(RawSettings, Settings), LoadError> {
    let raw = load_raw(flags)?;
    let settings = Settings::try_from(raw.clone())?;
    Ok((raw, settings))
}
