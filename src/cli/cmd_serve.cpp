// `dsv4 serve`: the OpenAI- and Anthropic-compatible API server (issue 5). Loads the model (the
// embedded random-weight default model without --model), starts the scheduler thread and serves
// HTTP until SIGINT/SIGTERM. A signal starts a graceful shutdown: no new connections or requests,
// waiting requests answered 503, running ones get --grace seconds and then end with an error
// event (never a normal finish); the process exits within the grace period whatever clients do.
// A second signal ends it at once.
#include <malloc.h>
#include <pthread.h>
#include <sys/resource.h>

#include <csignal>
#include <cstdio>
#include <atomic>
#include <chrono>
#include <thread>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/error.h"
#include "core/log.h"
#include "cache/seq_state.h"
#include "engine/generate.h"
#include "engine/scheduler.h"
#include "model/forward.h"
#include "engine/default_model.h"
#include "model/weights.h"
#include "server/http_server.h"
#include "text/chat_template.h"
#include "text/tokenizer.h"

namespace dsv4::cli {

namespace {

struct ServeArgs {
  std::string model, host = "127.0.0.1", api_key, cache_dir, served_name = "deepseek-v4-flash", numerics = "reference";
  ModelLoadArgs load;
  std::string encoder = "auto", reasoning_effort = "default", log_level = "info";
  int port = 8080, parallel = 4, step_tokens = int(engine::kDefaultPrefillChunk), queue = 64, keepalive_ms = 2000;
  int64_t ctx = 0;  // 0: derived from the state memory (see --ctx)
  int64_t max_tokens = 0;
  int end_turn_after = 0;
  int max_connections = 1024, header_timeout_s = 10, body_timeout_s = 60, idle_timeout_s = 5, write_timeout_s = 30;
  int max_body_mb = 64;
  double grace_s = 20;
  bool cache_fsync = true;
  size_t kv_mb = 8192, cache_mb = 2048;
  bool quiet = false;
};

void serve(const ServeArgs& a) {
  log::set_prefix("dsv4 serve");
  log::Level level;
  if (!log::level_from_string(a.log_level, &level))
    throw Error("--log-level: expected debug, info, warn, error or off, got '" + a.log_level + "'");
  log::set_level(level);
  // SIGINT/SIGTERM are taken by a dedicated thread (sigwait), never in a signal handler: every
  // thread started below inherits the blocked mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  // glibc gives each thread that allocates its own arena and keeps freed pages there: a big
  // request parsed on one thread and freed on another left hundreds of MB resident. Two arenas
  // (and malloc_trim after big requests, server/http_server.cpp) keep RSS flat.
  mallopt(M_ARENA_MAX, 2);
  // Each connection is a descriptor: lift the soft limit (often 1024) to the hard one.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  const std::string dir = a.model.empty() ? engine::default_model_dir() : a.model;
  model::Numerics numerics;
  if (!model::numerics_from_string(a.numerics, &numerics)) throw Error("--numerics: expected reference or f32, got '" + a.numerics + "'");
  auto m = load_model(dir, a.load, "serve");
  text::Tokenizer tok = text::Tokenizer::load(dir);
  model::ForwardPass fp(*m, numerics);

  // Context window: --ctx, else the longest that --parallel sequences of it fit in --kv-mb of
  // state (V4's compressed state is small: agents' 20-100K-token prompts fit by default).
  const int64_t model_max = engine::context_limit(m->config(), 0);
  int64_t ctx = a.ctx;
  std::string ctx_why = "--ctx";
  if (ctx > 0) {
    ctx = engine::context_limit(m->config(), ctx);
  } else {
    ctx = engine::context_for_budget(fp.state_shape(), a.kv_mb << 20, a.parallel, model_max);
    const size_t per_seq = cache::state_bytes_at(fp.state_shape(), ctx,
        cache::StateBytesOptions{.per_page = true, .snapshots = cache::SeqState::kMaxSnapshots}).total();
    ctx_why = ctx == model_max ? "the model's maximum; " : "";
    ctx_why += "--parallel " + std::to_string(a.parallel) + " x " + std::to_string(per_seq >> 20) +
               " MiB of state each fit in --kv-mb " + std::to_string(a.kv_mb);
    if (ctx < 32768)
      log::warn("the default context is only %lld tokens (--kv-mb %zu for --parallel %d): raise --kv-mb or lower --parallel "
                "for agents' long prompts", (long long)ctx, a.kv_mb, a.parallel);
  }

  engine::SchedulerConfig sc;
  sc.parallel = a.parallel;
  sc.ctx = ctx;
  sc.step_tokens = a.step_tokens;
  sc.queue_capacity = size_t(a.queue);
  sc.kv_budget_bytes = a.kv_mb << 20;
  sc.cache_budget_bytes = a.cache_mb << 20;
  sc.cache_dir = a.cache_dir;
  sc.cache_fsync = a.cache_fsync;
  engine::Scheduler sched(fp, tok, sc);

  server::ServerOptions so;
  so.host = a.host;
  so.port = a.port;
  so.api_key = a.api_key;
  so.model.name = a.served_name;
  so.model.aliases = {"deepseek-v4-flash", "deepseek-v4-pro", "deepseek-v4", "deepseek-chat", "deepseek-reasoner", "default"};
  so.model.ctx = ctx;
  so.model.max_output = a.max_tokens;
  so.model.end_turn_after = a.end_turn_after;
  if (a.end_turn_after > 0)
    log::warn("--end-turn-after %d: every answer is ended after %d tokens (a test aid for random-weight models)",
              a.end_turn_after, a.end_turn_after);
  std::string encoder_why;
  const text::EffortTable& effort = text::EffortTable::from_flag(a.encoder, dir, &encoder_why);
  so.model.effort_table = &effort;
  so.model.default_effort = a.reasoning_effort == "default" ? effort.default_effort : a.reasoning_effort;
  if (!so.model.default_effort.empty() && so.model.default_effort != "none") {
    text::ChatRequest probe;  // checks the value against the table before serving
    probe.options.reasoning_effort = so.model.default_effort;
    so.model.apply_effort(probe);
  }
  if (so.model.default_effort == "none") so.model.default_effort.clear();
  so.keepalive_ms = a.keepalive_ms;
  so.log_requests = !a.quiet;
  so.max_connections = a.max_connections;
  so.header_timeout_ms = a.header_timeout_s * 1000;
  so.body_timeout_ms = a.body_timeout_s * 1000;
  so.idle_timeout_ms = a.idle_timeout_s * 1000;
  so.write_timeout_ms = a.write_timeout_s * 1000;
  so.max_body_bytes = size_t(a.max_body_mb) << 20;
  server::HttpServer http(sched, tok, so);
  if (!http.bind()) throw Error("cannot listen on " + a.host + ":" + std::to_string(a.port));

  // The effective configuration, once; nothing below prints it again.
  const auto& st = sched.stats();
  const std::string cache_dir = a.cache_dir.empty() ? "off (RAM only)"
      : a.cache_dir + " (" + std::to_string(st.cache_entries.load()) + " entries, " +
            std::to_string(st.cache_bytes.load() >> 20) + " MiB loaded)";
  log::info("configuration\n"
            "  model        = %s%s\n  served name  = %s\n  numerics     = %s\n  ctx          = %lld (%s)\n  max tokens   = %s\n"
            "  parallel     = %d\n  step tokens  = %d\n  queue        = %d\n  kv budget    = %zu MiB\n"
            "  prefix cache = %zu MiB\n  cache dir    = %s%s\n  auth         = %s\n"
            "  connections  = %d at most; header %d s, body %d s, idle %d s, write %d s; body <= %d MiB\n"
            "  shutdown     = %.0f s grace\n  sse comment  = every %d ms idle\n  request log  = %s\n  threads      = %u hw\n"
            "  drafter      = %s (not used for decoding)\n  encoder      = %s (%s), default effort %s",
            dir.c_str(), a.model.empty() ? " (embedded default model: random weights, for trying the server)" : "",
            a.served_name.c_str(), a.numerics.c_str(), (long long)ctx, ctx_why.c_str(),
            a.max_tokens > 0 ? std::to_string(a.max_tokens).c_str() : "the rest of the context", a.parallel, a.step_tokens, a.queue,
            a.kv_mb, a.cache_mb, cache_dir.c_str(), a.cache_dir.empty() || a.cache_fsync ? "" : " (no fsync)",
            a.api_key.empty() ? "off" : "api key", a.max_connections, a.header_timeout_s, a.body_timeout_s,
            a.idle_timeout_s, a.write_timeout_s, a.max_body_mb, a.grace_s, so.keepalive_ms, so.log_requests ? "on" : "off (--quiet)", std::thread::hardware_concurrency(),
            model::drafter_kind_name(m->weights().drafter), effort.name.c_str(), encoder_why.c_str(),
            so.model.default_effort.empty() ? "none" : so.model.default_effort.c_str());
  log::info("listening on http://%s:%d (OpenAI: /v1, Anthropic: /v1/messages)", a.host.c_str(), http.port());

  std::atomic<bool> served{false};
  std::thread stopper([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    if (served) return;  // serve() ended on its own
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    const auto grace = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(a.grace_s));
    log::info("signal %d: shutting down (running requests get %.1f s; a second signal stops at once)", sig, a.grace_s);
    http.begin_shutdown();  // no new connections; idle ones closed; new requests 503
    sched.drain();          // waiting requests answered 503
    // A second signal while we wait cuts the grace period short.
    timespec poll{0, 20 * 1000 * 1000};
    while (Clock::now() - t0 < grace) {
      if (sched.stats().running.load() == 0 && sched.stats().waiting.load() == 0 && http.active_requests() == 0) break;
      if (sigtimedwait(&stop_signals, nullptr, &poll) > 0) {
        log::info("second signal: stopping now");
        break;
      }
    }
    const int left = int(sched.stats().running.load());
    if (left > 0) log::warn("grace period over: ending %d running request(s) with an error", left);
    sched.stop("the server is shutting down: generation stopped before it finished");
    // The final error events go out; a client that does not read them is not waited for.
    const auto flush_until = Clock::now() + std::chrono::milliseconds(500);
    while (http.active_requests() > 0 && Clock::now() < flush_until) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    http.stop();
  });
  sched.start();
  http.serve();
  served = true;
  pthread_kill(stopper.native_handle(), SIGTERM);  // serve() ended on its own or by stop(): release the thread
  stopper.join();
  sched.stop();
  log::info("stopped");
}

}  // namespace

void register_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* c = app.add_subcommand("serve", "OpenAI- and Anthropic-compatible API server");
  c->add_option("--model", a->model, "checkpoint directory (default: the embedded random-weight tiny model)");
  add_model_load_options(c, a->load);
  c->add_option("--host", a->host, "address to listen on")->capture_default_str();
  c->add_option("--port", a->port, "port (0: any free port, printed at startup)")->capture_default_str();
  c->add_option("--api-key", a->api_key, "require this key (Authorization: Bearer or x-api-key)");
  c->add_option("--parallel", a->parallel, "sequences decoded together at most")->capture_default_str()->check(CLI::Range(1, 1024));
  c->add_option("--ctx", a->ctx,
                "context window per sequence, tokens (prompt + output). Default: the longest context at which --parallel "
                "sequences fit in --kv-mb of state, as admission reserves it (cache::state_bytes_at), capped at the "
                "model's max_position_embeddings; the chosen value is printed at start")
      ->check(CLI::Range(16, 1 << 20));
  c->add_option("--max-tokens", a->max_tokens,
                "most tokens one request may generate; requests asking for more (or naming no limit) stop there with "
                "finish 'length' (default 0: until the context is full)")
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  c->add_option("--end-turn-after", a->end_turn_after,
                "test aid for random-weight models, which never end a turn: the engine writes </think> after half of N "
                "tokens and EOS after N, so agents see ordinary finished turns (default 0: off)")
      ->check(CLI::Range(0, 1 << 20));
  c->add_option("--served-name", a->served_name, "model name reported and accepted")->capture_default_str();
  c->add_option("--numerics", a->numerics, "reference | f32")->capture_default_str();
  c->add_option("--step-tokens", a->step_tokens, "forward rows per scheduler step (prefill chunking)")->capture_default_str()->check(CLI::Range(1, 65536));
  c->add_option("--queue", a->queue, "waiting requests before 503")->capture_default_str()->check(CLI::Range(1, 100000));
  c->add_option("--kv-mb", a->kv_mb, "state memory budget of running sequences, MiB")->capture_default_str();
  c->add_option("--cache-mb", a->cache_mb, "prefix cache RAM budget, MiB")->capture_default_str();
  c->add_option("--cache-dir", a->cache_dir, "persist prefix-cache states here (atomic, checksummed; reloaded at start)");
  c->add_option("--keepalive-ms", a->keepalive_ms, "SSE keep-alive comment interval")->capture_default_str();
  c->add_option("--max-connections", a->max_connections, "open client connections at most (more: 503 and closed)")->capture_default_str()->check(CLI::Range(1, 1000000));
  c->add_option("--header-timeout", a->header_timeout_s, "seconds a request's header may take to arrive")->capture_default_str()->check(CLI::Range(1, 3600));
  c->add_option("--body-timeout", a->body_timeout_s, "seconds a request's body may take to arrive")->capture_default_str()->check(CLI::Range(1, 3600));
  c->add_option("--idle-timeout", a->idle_timeout_s, "seconds a kept-alive connection may wait for its next request")->capture_default_str()->check(CLI::Range(1, 3600));
  c->add_option("--write-timeout", a->write_timeout_s, "seconds one response write may take (slow readers are closed)")->capture_default_str()->check(CLI::Range(1, 3600));
  c->add_option("--max-body-mb", a->max_body_mb, "request body limit, MiB (413 beyond; chunked bodies too)")->capture_default_str()->check(CLI::Range(1, 4096));
  c->add_option("--grace", a->grace_s, "seconds running requests get to finish after SIGTERM/SIGINT")->capture_default_str()->check(CLI::Range(0.0, 3600.0));
  c->add_flag("!--no-cache-fsync", a->cache_fsync, "do not fsync --cache-dir files (faster; a power loss may lose recent entries)");
  c->add_option("--encoder", a->encoder, "prompt encoder (reasoning-effort table): auto (from the checkpoint), v4 or v4-0731")->capture_default_str();
  c->add_option("--reasoning-effort", a->reasoning_effort, "effort for requests that name none: default (the encoder's), none, low, high, max")->capture_default_str();
  c->add_flag("--quiet", a->quiet, "no per-request log lines");
  c->add_option("--log-level", a->log_level, "debug | info | warn | error | off")->capture_default_str();
  add_expert_parallel_options(c);
  c->callback([a] { serve(*a); });
}

}  // namespace dsv4::cli
