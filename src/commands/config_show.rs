//! `sundial config show`: the effective settings, secrets masked.

use std::io::Write;

use sundial_core::settings::RawSettings;

use super::CommandError;

pub fn run(raw: &RawSettings, out: &mut impl Write) -> Result<(), CommandError> {
    let text =
        toml::to_string_pretty(&raw.masked()).map_err(|e| CommandError::Failed(e.to_string()))?;
    write!(out, "{text}").map_err(CommandError::output)
}
