//! Job files: one job, or `{ "jobs": [...] }` / `[[jobs]]`, in TOML or JSON.
//! Unknown keys are errors; the error names the path (`jobs[2].retry.max_attempts`).

use serde::Deserialize;

use super::JobSpec;
use crate::error::ValidationError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    Json,
    Toml,
}

impl FileFormat {
    /// By extension: `.json` is JSON, everything else TOML.
    pub fn from_path(path: &std::path::Path) -> Self {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("json") => FileFormat::Json,
            _ => FileFormat::Toml,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Many {
    jobs: Vec<JobSpec>,
}

/// Parses a job file into its jobs (not yet validated).
pub fn parse_job_file(text: &str, format: FileFormat) -> Result<Vec<JobSpec>, ValidationError> {
    if format == FileFormat::Json {
        // Syntax first: its error names the real line (a comma missing on
        // line 900 is not "unknown field" on line 2).
        serde_json::from_str::<serde::de::IgnoredAny>(text)
            .map_err(|e| ValidationError::new("body", e.to_string()))?;
    }
    let many = text_has_jobs_key(text, format);
    match (format, many) {
        // A bare JSON array is a list of jobs too.
        (FileFormat::Json, _) if text.trim_start().starts_with('[') => json::<Vec<JobSpec>>(text),
        (FileFormat::Json, true) => json::<Many>(text).map(|m| m.jobs),
        (FileFormat::Json, false) => json::<JobSpec>(text).map(|j| vec![j]),
        (FileFormat::Toml, true) => toml_de::<Many>(text).map(|m| m.jobs),
        (FileFormat::Toml, false) => toml_de::<JobSpec>(text).map(|j| vec![j]),
    }
}

/// Decodes one JSON document, naming the path of the first error.
pub(crate) fn json<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, ValidationError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let v = serde_path_to_error::deserialize(&mut de).map_err(|e| path_error(&e))?;
    de.end()
        .map_err(|e| ValidationError::new("body", e.to_string()))?;
    Ok(v)
}

fn toml_de<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, ValidationError> {
    let de =
        toml::Deserializer::parse(text).map_err(|e| ValidationError::new("body", e.to_string()))?;
    serde_path_to_error::deserialize(de).map_err(|e| path_error(&e))
}

pub(crate) fn path_error<E: std::fmt::Display>(
    e: &serde_path_to_error::Error<E>,
) -> ValidationError {
    let path = e.path().to_string();
    let field = if path == "." {
        "body".to_string()
    } else {
        path
    };
    ValidationError::new(field, e.inner().to_string())
}

fn text_has_jobs_key(text: &str, format: FileFormat) -> bool {
    match format {
        FileFormat::Json => serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .is_some_and(|v| v.get("jobs").is_some()),
        FileFormat::Toml => toml::from_str::<toml::Table>(text)
            .ok()
            .is_some_and(|t| t.contains_key("jobs")),
    }
}
