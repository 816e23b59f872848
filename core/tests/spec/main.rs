//! Specification tests of `sundial-core`, one binary.
//!
//! | module       | what it pins down |
//! |--------------|-------------------|
//! | `alerts`     | alerts on occurrences (failed, late, missed, resolved), by table |
//! | `attempt`    | retry tiers and dead letters after a failure; duplicate window; output tail |
//! | `docs`       | the JSON examples in docs/protocol.md decode
//! | `dst`        | hand-written DST tables: New York, Berlin, Lord Howe, Shanghai |
//! | `posix`      | POSIX/Vixie cron semantics (weekday numbering, DOM OR DOW, aliases, L W #) |
//! | `restart`    | restart intensity escalates; backoff grows to a cap with bounded jitter |
//! | `schedules`  | `@every`, `@at`, parse errors, never-fires validation |
//! | `model`      | an independent minute-walk model of the DST rule, compared on random expressions |
//! | `properties` | proptest: `next_after` strictly increasing and after its argument |
//! | `history`    | an attempt's history row merged from its records in any order; summary and percentiles |
//! | `ledger`     | expected fire ids of a window; missing, duplicate, unexpected |
//! | `jobs`       | job files (TOML/JSON), validation messages, fire ids |
//! | `codec`      | round trips of every message, and each kind of bad input |
//! | `sign`       | HMAC signatures: commands (age, replay window), fire events (retries keep them) |
//! | `settings`   | settings validation and masking |
//! | `workflow`   | workflow steps: refusals naming their path; the decision of what runs next, by table |
//! | `timer`      | a timer shard without broker or clock: watermark vs in-flight fires, jitter, upserts of due jobs, pause/resume/delete, flush, misfires on takeover |

mod alerts;
mod attempt;
mod codec;
mod docs;
mod dst;
mod history;
mod jobs;
mod ledger;
mod model;
mod posix;
mod properties;
mod restart;
mod schedules;
mod settings;
mod sign;
mod timer;
mod util;
mod workflow;
