//! Executors: what a worker does with a fire. The JSON/TOML form is tagged by
//! `type`; the binary form (fire events) is tagged by variant index, because
//! bincode cannot read internally tagged enums.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Executor {
    /// Succeeds at once (tests, benchmarks).
    Noop,
    Shell(ShellExecutor),
    Http(HttpExecutor),
    Publish(PublishExecutor),
    /// A Rust handler registered by name in an embedded worker.
    Handler {
        name: String,
    },
}

impl Executor {
    /// The `type` tag, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Executor::Noop => "noop",
            Executor::Shell(_) => "shell",
            Executor::Http(_) => "http",
            Executor::Publish(_) => "publish",
            Executor::Handler { .. } => "handler",
        }
    }
}

/// Runs a program with an argv (no shell interpolation). Refused by workers
/// unless the program is allow-listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ShellExecutor {
    pub command: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub cwd: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HttpExecutor {
    #[serde(default = "default_method")]
    pub method: String,
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub body: Option<String>,
    /// Statuses that count as success; empty means any 2xx.
    #[serde(default)]
    pub expect: Vec<u16>,
}

/// Hands the payload to your own consumers (any language) with confirms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PublishExecutor {
    pub exchange: String,
    pub routing_key: String,
}

fn default_method() -> String {
    "GET".to_string()
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
enum Tagged {
    Noop {},
    Shell(ShellExecutor),
    Http(HttpExecutor),
    Publish(PublishExecutor),
    Handler { name: String },
}

#[derive(Deserialize)]
enum Indexed {
    Noop,
    Shell(ShellExecutor),
    Http(HttpExecutor),
    Publish(PublishExecutor),
    Handler(String),
}

/// Borrowing mirrors for serialization: the same names and shapes as
/// `Tagged` and `Indexed`, without cloning the executor (fire events are
/// encoded once per fire, on the timer's hot path).
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum TaggedRef<'a> {
    Noop {},
    Shell(&'a ShellExecutor),
    Http(&'a HttpExecutor),
    Publish(&'a PublishExecutor),
    Handler { name: &'a str },
}

#[derive(Serialize)]
#[serde(rename = "Indexed")]
enum IndexedRef<'a> {
    Noop,
    Shell(&'a ShellExecutor),
    Http(&'a HttpExecutor),
    Publish(&'a PublishExecutor),
    Handler(&'a str),
}

impl Serialize for Executor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            match self {
                Executor::Noop => TaggedRef::Noop {},
                Executor::Shell(x) => TaggedRef::Shell(x),
                Executor::Http(x) => TaggedRef::Http(x),
                Executor::Publish(x) => TaggedRef::Publish(x),
                Executor::Handler { name } => TaggedRef::Handler { name },
            }
            .serialize(s)
        } else {
            match self {
                Executor::Noop => IndexedRef::Noop,
                Executor::Shell(x) => IndexedRef::Shell(x),
                Executor::Http(x) => IndexedRef::Http(x),
                Executor::Publish(x) => IndexedRef::Publish(x),
                Executor::Handler { name } => IndexedRef::Handler(name),
            }
            .serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for Executor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(if d.is_human_readable() {
            match Tagged::deserialize(d)? {
                Tagged::Noop {} => Executor::Noop,
                Tagged::Shell(s) => Executor::Shell(s),
                Tagged::Http(h) => Executor::Http(h),
                Tagged::Publish(p) => Executor::Publish(p),
                Tagged::Handler { name } => Executor::Handler { name },
            }
        } else {
            match Indexed::deserialize(d)? {
                Indexed::Noop => Executor::Noop,
                Indexed::Shell(s) => Executor::Shell(s),
                Indexed::Http(h) => Executor::Http(h),
                Indexed::Publish(p) => Executor::Publish(p),
                Indexed::Handler(name) => Executor::Handler { name },
            }
        })
    }
}

/// The JSON form of an executor: one object per kind, its `type` beside
/// the kind's own fields, nothing else (`deny_unknown_fields`).
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Executor {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{
            AdditionalProperties, Object, ObjectBuilder, OneOfBuilder, Schema, Type,
        };
        use utoipa::openapi::RefOr;
        fn variant(tag: &str, fields: Option<RefOr<Schema>>) -> Schema {
            let mut obj = match fields {
                Some(RefOr::T(Schema::Object(o))) => o,
                _ => Object::new(),
            };
            obj.schema_type = Type::Object.into();
            obj.properties.insert(
                "type".into(),
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some([tag]))
                    .into(),
            );
            obj.required.insert(0, "type".into());
            obj.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
            Schema::Object(obj)
        }
        let handler = ObjectBuilder::new()
            .property("name", ObjectBuilder::new().schema_type(Type::String))
            .required("name")
            .build();
        OneOfBuilder::new()
            .item(variant("noop", None))
            .item(variant(
                "shell",
                Some(<ShellExecutor as utoipa::PartialSchema>::schema()),
            ))
            .item(variant(
                "http",
                Some(<HttpExecutor as utoipa::PartialSchema>::schema()),
            ))
            .item(variant(
                "publish",
                Some(<PublishExecutor as utoipa::PartialSchema>::schema()),
            ))
            .item(variant("handler", Some(RefOr::T(Schema::Object(handler)))))
            .description(Some(
                "What a fire runs: `noop`, `shell`, `http`, `publish` or `handler`, by `type`",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Executor {}
