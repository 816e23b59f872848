//! Integration tests of the `sundial` binary and its adapters against the real
//! RabbitMQ on 127.0.0.1:5672. Each test that touches the broker gets its own
//! vhost (created and deleted through `rabbitmqctl` by `util::Vhost`).
//!
//! | module     | behaviour |
//! |------------|-----------|
//! | `api`      | `/api/v1`: job search and paging, next fires with DST notes, writes through the control queue (pause with a reason, backfill, …), error statuses, read and admin tokens |
//! | `brokers`  | `broker.urls`: an unreachable address skipped, status names the one in use, heartbeats on, an error naming every address |
//! | `cli`      | `schedule next` output and exit codes, `config show` layering and masking |
//! | `dlq_reads` | fifty reads leave every dead letter unchanged; the delivery limit of the dead-letter queues; an older release's queue kept with a warning |
//! | `executors` | shell and http jobs get the fire id, occurrence, attempt and payload; timeouts kill the process group; publish jobs; secrets; cancel requests |
//! | `exits`    | every early exit is one line and its status, never a panic or a hang (closed pipes, SIGTERM in start-up and replay); a scheduler and three workers on one host with default ports |
//! | `cli_output` | completions, aligned tables with long ids, progress on a terminal only |
//! | `deploy`   | deployment files parse and carry the keys Sundial relies on |
//! | `history` | run history: attempts recorded, indexed, queried (CLI and /api/v1), surviving a SIGKILL, rebuilt by a fresh node; poison records skipped |
//! | `failover` | two schedulers: shards split by lease, handover and takeover judged by a fire ledger, commands through either node |
//! | `ops`      | `/metrics` with real values, `/healthz`, `/readyz`; a taken address fails at start |
//! | `overlap`  | `forbid` skips fires while a run runs; `replace` cancels the running attempt |
//! | `pools`    | an upsert into a pool without queues is refused naming `pool`; an unroutable fire is set aside and the watermark moves on; reply details |
//! | `run`      | `sundial run`: jobs file applied, one line per outcome; a clear message without a broker |
//! | `firing`   | a scheduler process fires consecutive occurrences in order; pause, resume, trigger, jitter |
//! | `control`  | the protocol document's JSON creates a job; bad control input answered naming the field and dead-lettered |
//! | `misfires` | a restart applies each misfire policy and fires nothing twice |
//! | `job_cli`  | `sundial job apply`: idempotent, declarative, batched with a result per job; CLI errors exit non-zero |
//! | `registry` | registry snapshots written; a restart replays from them |
//! | `control_client` | helper: a raw control-protocol client over AMQP |
//! | `security` | least privilege: the worker's definitions.json permissions run jobs but cannot publish control commands |
//! | `settling` | an attempt that cannot report (nacked run event) requeues its fire; the slot is freed |
//! | `signing`  | with `control.hmac_key`: unsigned/bad/old/replayed commands refused; the CLI signs; fires signed, forged shell fires refused |
//! | `topology` | `topology apply` is idempotent; a conflicting queue is named with its argument |
//! | `wire`     | message metadata and bodies survive a trip through RabbitMQ
//! | `retries`  | a failing attempt walks its backoff through the retry tiers and succeeds later |
//! | `dead_letters` | exhausted, refused and unreadable fires dead-lettered with reasons; `dlq` list/show/replay/purge/watch; the DlqWatcher's alert |
//! | `workers`  | several worker processes on a pool; a SIGKILLed worker's run redelivered; duplicates dropped |
//! | `shutdown` | SIGTERM lets the running attempt finish |
//! | `run_events` | what each `worker.run_events` level publishes |
//! | `fires`    | helpers: fire events as a scheduler publishes them, the event tap, an in-process worker |
//! | `util`     | vhosts, the binary under test, bounded waits |

mod alerts;
mod api;
mod brokers;
mod cli;
mod cli_output;
mod control;
mod control_client;
mod dead_letters;
mod deploy;
mod dlq_reads;
mod executors;
mod exits;
mod failover;
mod fires;
mod firing;
mod history;
mod hostile;
mod job_cli;
mod misfires;
mod ops;
mod overlap;
mod pools;
mod registry;
mod retries;
mod run;
mod run_events;
mod security;
mod settling;
mod shutdown;
mod signing;
mod topology;
mod util;
mod wire;
mod workers;
mod workflows;
