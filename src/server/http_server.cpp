#include "server/http_server.h"

#include <malloc.h>

#include <array>
#include <boost/asio.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <sstream>
#include <unordered_set>

#include "core/log.h"
#include "model/expert_store.h"
#include "server/generation.h"

namespace dsv4::server {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

namespace {

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

bool is_anthropic_path(const std::string& p) { return p.find("/messages") != std::string::npos; }

std::string error_for(const std::string& path, const ApiError& e) {
  return is_anthropic_path(path) ? anthropic::error_body(e) : openai::error_body(e);
}

const char* reason_phrase(int st) {
  switch (st) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 413: return "Payload Too Large";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 529: return "Overloaded";
    default: return st < 400 ? "OK" : "Error";
  }
}

// One HTTP/1.1 chunk.
void append_chunk(std::string& out, const std::string& data) {
  if (data.empty()) return;
  char hex[24];
  std::snprintf(hex, sizeof hex, "%zx\r\n", data.size());
  out += hex;
  out += data;
  out += "\r\n";
}

enum class Route { none, root, health, metrics, models, model, chat, completion, responses, stored_response, messages, count_tokens };

Route route_of(const std::string& method, const std::string& path, std::string* model_name) {
  auto strip = [&](const char* p) { return path.rfind(p, 0) == 0 ? path.substr(std::strlen(p)) : std::string(); };
  if (method == "GET" || method == "HEAD") {  // HEAD: the GET answer's head only
    // The root answers: clients probe the base URL before their first request.
    if (path == "/") return Route::root;
    if (path == "/health" || path == "/v1/health") return Route::health;
    if (path == "/metrics") return Route::metrics;
    if (path == "/v1/models" || path == "/models") return Route::models;
    for (const char* p : {"/v1/models/", "/models/"}) {
      if (path.rfind(p, 0) == 0 && path.size() > std::strlen(p)) {
        *model_name = strip(p);
        return Route::model;
      }
    }
    for (const char* p : {"/v1/responses/", "/responses/"}) {
      const std::string id = strip(p);
      if (!id.empty() && id.find('/') == std::string::npos) {
        *model_name = id;  // the stored response's id
        return Route::stored_response;
      }
    }
  } else if (method == "POST") {
    // /beta: DeepSeek's base URL for strict tools and FIM (https://api.deepseek.com/beta).
    for (const char* p : {"/v1/chat/completions", "/chat/completions", "/beta/chat/completions", "/beta/v1/chat/completions"})
      if (path == p) return Route::chat;
    for (const char* p : {"/v1/completions", "/completions", "/beta/completions", "/beta/v1/completions"})
      if (path == p) return Route::completion;
    if (path == "/v1/responses" || path == "/responses") return Route::responses;
    if (path == "/v1/messages" || path == "/messages") return Route::messages;
    if (path == "/v1/messages/count_tokens" || path == "/messages/count_tokens") return Route::count_tokens;
  }
  return Route::none;
}

}  // namespace

// An ApiError as plain strings, to hand from a worker thread to the I/O thread: std::runtime_error's
// message is a reference-counted string that copies share, and libstdc++ counts those references
// where ThreadSanitizer cannot see it (a false report), so the I/O thread builds its own ApiError.
struct ErrorData {
  int status = 500;
  std::string type, message, param, code;
  static ErrorData of(const ApiError& e) { return {e.status, e.type, e.what(), e.param, e.code}; }
  ApiError error() const { return ApiError(status, type, message, param, code); }
};

// The scheduler thread's way into the I/O loop; cut when the server goes away.
struct Waker {
  std::mutex mu;
  asio::io_context* ioc = nullptr;
  template <class F>
  void post(F&& f) {
    std::lock_guard<std::mutex> lk(mu);
    if (ioc) asio::post(*ioc, std::forward<F>(f));
  }
};

// One request's generation: the dialect's responder and the engine events read so far.
struct Flow {
  std::shared_ptr<engine::Job> job;
  Generation gen;
  std::unique_ptr<Responder> responder;
  std::string id, path, model;
  bool stream = false;
  bool anthropic = false;
  Clock::time_point t0 = Clock::now();
  double ttft_ms = -1;
  bool logged = false;
  engine::TokenRunCache* runs = nullptr;
  engine::ReasoningMemo* memo = nullptr;
  // Set by the scheduler thread's notify when a wake-up is posted, cleared by the I/O thread
  // before it reads: one posted wake-up per batch of events, not per event.
  std::shared_ptr<std::atomic<bool>> wake = std::make_shared<std::atomic<bool>>(false);

  Flow(const text::Tokenizer& tok, PreparedRequest& pr)
      : gen(tok, pr.gen.output.mode, pr.want_logprobs), responder(std::move(pr.responder)), model(pr.model), stream(pr.stream) {}

  // Takes every pending engine event; returns the SSE text for them (streaming) or "".
  std::string pump() {
    std::vector<engine::TokenEvent> evs;
    if (!job->events.wait_pop(&evs, std::chrono::milliseconds(0))) return "";
    std::vector<text::ParseEvent> pe;
    std::vector<TokenLogprobInfo> lp;
    std::string out;
    for (const auto& e : evs) {
      const bool first = !gen.started();
      if (e.refused) refused = true;
      const bool fin = gen.on_event(e, &pe, &lp);
      if (first && gen.started()) {
        ttft_ms = ms_since(t0);
        if (stream && e.finish != engine::FinishReason::error) out += responder->stream_begin(gen.usage());
      }
      if (fin) break;
    }
    if (stream) {
      out += responder->stream_events(pe, lp);
      if (gen.done()) {
        const Outcome& o = gen.outcome();
        out += o.finish == engine::FinishReason::error ? responder->stream_error(o.error) : responder->stream_end(o);
      }
    }
    if (gen.done()) {
      if (runs) gen.register_runs(*runs);
      if (memo) {
        const Outcome& o = gen.outcome();
        if (!o.message.reasoning_content.empty())
          for (size_t i = 0; i < o.message.tool_calls.size(); ++i)
            memo->put(tool_call_id(id, int(i), anthropic), o.message.reasoning_content);
      }
    }
    return out;
  }
  bool refused = false;  // the scheduler refused it before it ran (shutdown): 503

  bool quiet = false;  // --quiet
  void log(int status) {
    if (logged) return;
    logged = true;
    if (quiet) return;
    const Usage& u = gen.usage();
    const double total = ms_since(t0);
    const double decode_ms = ttft_ms >= 0 ? total - ttft_ms : 0;
    const double tps = decode_ms > 0 && u.completion > 1 ? (u.completion - 1) * 1000.0 / decode_ms : 0;
    log::info("%s %s status=%d model=%s stream=%d prompt=%d cached=%d generated=%d finish=%s "
              "ttft_ms=%.1f total_ms=%.1f decode_tok_s=%.1f",
              id.c_str(), path.c_str(), status, model.c_str(), int(stream), u.prompt, u.cached, u.completion,
              engine::finish_reason_name(gen.done() ? gen.outcome().finish : engine::FinishReason::cancelled),
              ttft_ms, total, tps);
  }
};

struct HttpServer::Impl {
  HttpServer& self;
  engine::Scheduler& sched;
  const text::Tokenizer& tok;
  ServerOptions opt;
  std::unordered_set<Conn*> conns;  // I/O thread only; declared before ioc (outlives its handlers)
  asio::io_context ioc{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard = asio::make_work_guard(ioc);
  tcp::acceptor acceptor{ioc};
  asio::steady_timer accept_retry{ioc};
  asio::thread_pool workers;
  bool draining = false, stopped = false;  // I/O thread only
  std::atomic<uint64_t> http_requests{0}, http_errors{0}, overloads{0}, conn_refusals{0}, timeouts{0},
      client_gone{0}, conns_total{0};
  engine::TokenRunCache runs;
  engine::ReasoningMemo memo;
  std::shared_ptr<Waker> waker = std::make_shared<Waker>();

  Impl(HttpServer& s, engine::Scheduler& sc, const text::Tokenizer& t, ServerOptions o)
      : self(s), sched(sc), tok(t), opt(std::move(o)), workers(size_t(std::max(1, opt.workers))) {
    waker->ioc = &ioc;
  }
  ~Impl() {
    {
      std::lock_guard<std::mutex> lk(waker->mu);
      waker->ioc = nullptr;
    }
    workers.join();
  }

  void accept();
  std::string metrics_text() const;
};

struct HttpServer::Conn : std::enable_shared_from_this<Conn> {
  enum class Phase { idle, header, body, busy };
  Impl& srv;
  tcp::socket sock;
  boost::beast::flat_buffer buf;
  std::optional<http::request_parser<http::string_body>> parser;
  asio::steady_timer deadline, tick;
  uint64_t deadline_gen = 0;
  Phase phase = Phase::idle;
  int served = 0;
  bool closed = false;
  // The request being answered.
  std::string method, path;
  bool keep_alive = true;
  size_t body_bytes = 0;
  bool gen_active = false;  // a generation request counted in active_
  std::shared_ptr<Flow> flow;
  bool headers_sent = false;
  // Output: at most one write in flight.
  std::string out_pending, out_inflight;
  bool writing = false, response_done = false;
  Clock::time_point last_write = Clock::now();
  // Watch: a read on the socket while the answer is prepared (EOF = client gone).
  std::array<char, 4096> watch_buf{};
  bool watching = false, read_after_watch = false;

  Conn(Impl& s, tcp::socket so) : srv(s), sock(std::move(so)), deadline(s.ioc), tick(s.ioc) {
    srv.conns.insert(this);
    srv.self.conns_open_++;
    srv.conns_total++;
  }
  ~Conn() { detach(); }

  void detach() {
    if (srv.conns.erase(this)) srv.self.conns_open_--;
    if (gen_active) {
      gen_active = false;
      srv.self.active_--;
    }
  }

  void close() {
    if (closed) return;
    closed = true;
    ++deadline_gen;
    deadline.cancel();
    tick.cancel();
    error_code ec;
    sock.shutdown(tcp::socket::shutdown_both, ec);
    sock.close(ec);
    if (flow && !flow->gen.done()) {
      flow->job->cancel();  // the scheduler frees the sequence before its next step
      flow->log(499);
    }
    detach();
  }

  // Client gone (EOF, reset, a write failed or timed out) while a request was being answered.
  void client_gone(const char* why) {
    if (closed) return;
    if (gen_active) {
      srv.client_gone++;
      if (!flow) log::info("%s %s status=499 (client gone before the request started: %s)", method.c_str(), path.c_str(), why);
    }
    close();
  }

  void arm(int ms) {
    const uint64_t g = ++deadline_gen;
    deadline.expires_after(std::chrono::milliseconds(ms));
    deadline.async_wait([self = shared_from_this(), g](error_code ec) {
      if (ec || g != self->deadline_gen || self->closed) return;
      self->on_deadline();
    });
  }
  void disarm() {
    ++deadline_gen;
    deadline.cancel();
  }

  void on_deadline() {
    if (phase == Phase::idle) {  // an idle keep-alive connection: nothing to say
      close();
      return;
    }
    srv.timeouts++;
    const char* what = phase == Phase::header ? "header" : phase == Phase::body ? "body" : "write";
    if (srv.opt.log_requests) log::info("closing a connection: %s not complete within the deadline", what);
    client_gone(what);
  }

  // ---- reading a request ----

  void read_request() {
    if (closed) return;
    if (srv.draining || srv.stopped) {
      close();
      return;
    }
    parser.emplace();
    parser->header_limit(std::uint32_t(std::min<size_t>(srv.opt.max_header_bytes, UINT32_MAX)));
    parser->body_limit(std::uint64_t(srv.opt.max_body_bytes));
    method.clear();
    path.clear();
    body_bytes = 0;
    headers_sent = false;
    // Bytes already here (pipelined) start a request now; otherwise the connection is idle.
    phase = buf.size() > 0 || served == 0 ? Phase::header : Phase::idle;
    arm(served == 0 ? srv.opt.header_timeout_ms : srv.opt.idle_timeout_ms);
    http::async_read_header(sock, buf, *parser, [self = shared_from_this()](error_code ec, size_t) { self->on_header(ec); });
  }

  bool read_error(error_code ec) {
    if (closed) return true;
    if (!ec) return false;
    disarm();
    if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
        ec == http::error::partial_message) {
      close();
    } else if (ec == http::error::header_limit) {
      respond_error(431, "invalid_request_error",
                    "request header larger than " + std::to_string(srv.opt.max_header_bytes) + " bytes", true);
    } else if (ec == http::error::body_limit) {
      respond_error(413, "invalid_request_error",
                    "request body larger than " + std::to_string(srv.opt.max_body_bytes) + " bytes", true);
    } else {
      respond_error(400, "invalid_request_error", "malformed HTTP request: " + ec.message(), true);
    }
    return true;
  }

  void on_header(error_code ec) {
    if (read_error(ec)) return;
    srv.http_requests++;
    phase = Phase::body;
    auto& req = parser->get();
    method = std::string(req.method_string());
    path = std::string(req.target());
    if (auto q = path.find('?'); q != std::string::npos) path.resize(q);
    keep_alive = req.keep_alive();
    if (srv.draining) {
      respond_error(503, "overloaded_error", "the server is shutting down; retry on another instance", true);
      return;
    }
    // Auth and routing before the body is read: a refused request does not cost its upload.
    std::string model_name;
    const Route r = route_of(method, path, &model_name);
    const bool open = r == Route::root || r == Route::health || r == Route::metrics;
    if (!srv.opt.api_key.empty() && !open) {
      std::string key;
      const auto auth = req[http::field::authorization];
      if (auth.starts_with("Bearer ")) key = std::string(auth.substr(7));
      if (key.empty()) key = std::string(req["x-api-key"]);
      if (key != srv.opt.api_key) {
        respond_error(401, "authentication_error",
                      key.empty() ? "missing API key (Authorization: Bearer or x-api-key)" : "invalid API key", !parser->is_done());
        return;
      }
    }
    if (r == Route::none) {
      respond_error(unknown_route(), !parser->is_done());
      return;
    }
    if (parser->is_done()) {
      dispatch();
      return;
    }
    auto read_body = [self = shared_from_this()] {
      if (self->closed) return;
      self->arm(self->srv.opt.body_timeout_ms);
      http::async_read(self->sock, self->buf, *self->parser, [self](error_code ec, size_t) {
        if (self->read_error(ec)) return;
        self->disarm();
        self->dispatch();
      });
    };
    if (beast_iequals(req[http::field::expect], "100-continue")) {
      static const std::string cont = "HTTP/1.1 100 Continue\r\n\r\n";
      asio::async_write(sock, asio::buffer(cont), [self = shared_from_this(), read_body](error_code ec, size_t) {
        if (ec) return self->close();
        read_body();
      });
      return;
    }
    read_body();
  }

  static bool beast_iequals(boost::beast::string_view a, const char* b) { return boost::beast::iequals(a, b); }

  void dispatch() {
    disarm();
    phase = Phase::busy;
    ++served;
    auto& req = parser->get();
    body_bytes = req.body().size();
    std::string model_name;
    const Route r = route_of(method, path, &model_name);
    switch (r) {
      case Route::root:
        respond(200, "text/plain",
                "dsv4 serve: " + srv.opt.model.name + " (OpenAI: /v1/chat/completions, /v1/responses; Anthropic: /v1/messages)\n");
        return;
      case Route::stored_response:
        try {
          respond(200, "application/json", responses::get(model_name));
        } catch (const ApiError& e) {
          respond_error(e, false);
        }
        return;
      case Route::health: {
        const auto& st = srv.sched.stats();
        respond(200, "application/json",
                openai::health_body(srv.opt.model, srv.draining ? "shutting_down" : "ok", int(st.running.load()),
                                    int(st.waiting.load())));
        return;
      }
      case Route::metrics: respond(200, "text/plain; version=0.0.4", srv.metrics_text()); return;
      case Route::models: respond(200, "application/json", openai::models_body(srv.opt.model)); return;
      case Route::model:
        if (!srv.opt.model.resolve(model_name)) {
          respond_error(404, "not_found_error", "The model '" + model_name + "' does not exist", false);
          return;
        }
        respond(200, "application/json", openai::model_body(srv.opt.model));
        return;
      case Route::count_tokens: {
        auto body = std::make_shared<std::string>(std::move(req.body()));
        watch();
        asio::post(srv.workers, [self = shared_from_this(), body] {
          std::string out;
          int status = 200;
          try {
            DialectContext ctx{self->srv.tok, self->srv.opt.model, "", &self->srv.runs, &self->srv.memo};
            out = anthropic::count_tokens(*body, ctx);
          } catch (const ApiError& e) {
            status = e.status;
            out = anthropic::error_body(e);
          } catch (const std::exception& e) {
            status = 500;
            out = anthropic::error_body(ApiError(500, "api_error", e.what()));
          }
          asio::post(self->srv.ioc, [self, status, out = std::move(out)]() mutable {
            if (self->closed) return;
            if (status >= 400) self->srv.http_errors++;
            self->log_line(status);
            self->respond(status, "application/json", std::move(out));
          });
        });
        return;
      }
      case Route::chat:
      case Route::completion:
      case Route::responses:
      case Route::messages: generate(r); return;
      case Route::none: break;
    }
    respond_error(unknown_route(), false);
  }

  ApiError unknown_route() const {
    return ApiError(404, "not_found_error", "no route for " + method + " " + path, "", "unknown_route");
  }

  void log_line(int status) {
    if (srv.opt.log_requests) log::info("%s %s status=%d", method.c_str(), path.c_str(), status);
  }

  // ---- answering ----

  static std::string head(int status, const char* ctype, size_t len, bool close, const std::string& extra) {
    std::string h = "HTTP/1.1 " + std::to_string(status) + " " + reason_phrase(status) + "\r\nContent-Type: " + ctype +
                    "\r\nContent-Length: " + std::to_string(len) + "\r\n";
    h += close ? "Connection: close\r\n" : "Connection: keep-alive\r\n";
    h += extra;
    h += "\r\n";
    return h;
  }

  bool keep() const { return keep_alive && !srv.draining && !srv.stopped && served < srv.opt.keepalive_requests; }

  void respond(int status, const char* ctype, std::string body, const std::string& extra = "", bool force_close = false) {
    if (force_close) keep_alive = false;
    std::string out = head(status, ctype, body.size(), !keep(), extra);
    if (method != "HEAD") out += body;  // header and body in one send
    write(std::move(out), true);
  }

  void respond_error(int status, const char* type, const std::string& msg, bool force_close, const std::string& extra = "",
                     bool log_it = true) {
    respond_error(ApiError(status, type, msg), force_close, extra, log_it);
  }
  void respond_error(const ApiError& e, bool force_close, const std::string& extra = "", bool log_it = true) {
    srv.http_errors++;
    if (log_it) log_line(e.status);
    respond(e.status, "application/json", error_for(path, e), extra, force_close);
  }

  void write(std::string data, bool last) {
    if (closed) return;
    out_pending += data;
    if (last) response_done = true;
    flush();
  }

  void flush() {
    if (closed || writing) return;
    if (out_pending.empty()) {
      if (response_done) complete();
      return;
    }
    out_inflight.swap(out_pending);
    out_pending.clear();
    writing = true;
    if (phase != Phase::busy) phase = Phase::busy;
    arm(srv.opt.write_timeout_ms);
    asio::async_write(sock, asio::buffer(out_inflight), [self = shared_from_this()](error_code ec, size_t) {
      self->writing = false;
      if (self->closed) return;
      if (ec) return self->client_gone("write failed");
      self->disarm();
      self->last_write = Clock::now();
      self->out_inflight.clear();
      self->flush();
    });
  }

  // The response is on the wire: next request, or close.
  void complete() {
    response_done = false;
    tick.cancel();
    if (flow) flow.reset();
    if (gen_active) {
      gen_active = false;
      srv.self.active_--;
    }
    if (body_bytes >= srv.opt.trim_after_bytes) {
      // A big body's parse tree was freed on a worker thread: give the pages back to the system
      // (glibc keeps freed memory in per-thread arenas otherwise).
      asio::post(srv.workers, [] { malloc_trim(0); });
    }
    parser.reset();
    if (!keep()) {
      close();
      return;
    }
    if (watching) {
      read_after_watch = true;
      error_code ec;
      sock.cancel(ec);  // the watch's handler starts the next read
      return;
    }
    read_request();
  }

  void watch() {
    if (watching || closed) return;
    watching = true;
    sock.async_read_some(asio::buffer(watch_buf), [self = shared_from_this()](error_code ec, size_t n) {
      self->watching = false;
      if (self->closed) return;
      if (n > 0) {  // pipelined bytes: keep them for the next request
        asio::buffer_copy(self->buf.prepare(n), asio::buffer(self->watch_buf.data(), n));
        self->buf.commit(n);
      }
      if (ec && ec != asio::error::operation_aborted) return self->client_gone("connection closed");
      if (self->read_after_watch) {
        self->read_after_watch = false;
        self->read_request();
        return;
      }
      if (!ec && self->buf.size() < (size_t(1) << 20)) self->watch();
    });
  }

  // ---- generation ----

  void generate(Route r) {
    const bool anth = r == Route::messages;
    if (!srv.sched.try_reserve()) {
      srv.overloads++;
      if (srv.sched.draining() || srv.draining) {
        respond_error(503, "overloaded_error", "the server is shutting down; retry on another instance", true, "Retry-After: 1\r\n");
        return;
      }
      // Anthropic's convention for an overloaded API is 529; OpenAI's clients expect 503.
      respond_error(anth ? 529 : 503, "overloaded_error", "server overloaded: the request queue is full; retry later", false,
                    "Retry-After: 1\r\n");
      return;
    }
    gen_active = true;
    srv.self.active_++;
    const std::string id = new_id(anth ? "msg_" : r == Route::chat ? "chatcmpl-" : r == Route::responses ? "resp_" : "cmpl-");
    auto body = std::make_shared<std::string>(std::move(parser->get().body()));
    // The watch notices a client that leaves while its request is prepared or runs; its pending
    // read is also what keeps this connection alive until the answer is written.
    watch();
    asio::post(srv.workers, [self = shared_from_this(), r, id, body] {
      auto pr = std::make_shared<PreparedRequest>();
      std::optional<ErrorData> err;
      try {
        DialectContext ctx{self->srv.tok, self->srv.opt.model, id, &self->srv.runs, &self->srv.memo};
        switch (r) {
          case Route::chat: *pr = openai::prepare_chat(*body, ctx); break;
          case Route::completion: *pr = openai::prepare_completion(*body, ctx); break;
          case Route::responses: *pr = responses::prepare(*body, ctx); break;
          default: *pr = anthropic::prepare_messages(*body, ctx); break;
        }
      } catch (const ApiError& e) {
        err = ErrorData::of(e);
      } catch (const std::exception& e) {
        err = ErrorData::of(ApiError(500, "server_error", e.what()));
      }
      body->clear();
      body->shrink_to_fit();
      asio::post(self->srv.ioc, [self, pr, err, id]() { self->start_generation(pr, err, id); });
    });
  }

  void start_generation(const std::shared_ptr<PreparedRequest>& pr, const std::optional<ErrorData>& err, const std::string& id) {
    if (closed) {
      srv.sched.release_reservation();
      return;
    }
    if (err) {
      srv.sched.release_reservation();
      respond_error(err->error(), false);
      return;
    }
    flow = std::make_shared<Flow>(srv.tok, *pr);
    flow->id = id;
    flow->path = path;
    flow->runs = &srv.runs;
    flow->memo = &srv.memo;
    flow->anthropic = is_anthropic_path(path);
    flow->quiet = !srv.opt.log_requests;
    std::weak_ptr<Conn> weak = weak_from_this();
    auto wake = flow->wake;
    auto waker = srv.waker;
    flow->job = srv.sched.submit(std::move(pr->gen), true, [weak, wake, waker] {
      if (wake->exchange(true)) return;
      waker->post([weak] {
        if (auto c = weak.lock()) c->on_events();
      });
    });
    if (!flow->job) {
      flow.reset();
      respond_error(503, "overloaded_error", "the server is shutting down; retry on another instance", true, "Retry-After: 1\r\n");
      return;
    }
    if (flow->stream) keepalive_tick();
  }

  void keepalive_tick() {
    tick.expires_after(std::chrono::milliseconds(std::max(50, srv.opt.keepalive_ms / 2)));
    tick.async_wait([self = shared_from_this()](error_code ec) {
      if (ec || self->closed || !self->flow || self->flow->gen.done()) return;
      if (!self->writing && Clock::now() - self->last_write >= std::chrono::milliseconds(self->srv.opt.keepalive_ms))
        self->stream_out(": keep-alive\n\n", false);
      self->keepalive_tick();
    });
  }

  void stream_out(const std::string& sse, bool last) {
    std::string out;
    if (!headers_sent) {
      headers_sent = true;
      out = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\n"
            "Transfer-Encoding: chunked\r\n";
      out += keep() ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
    }
    append_chunk(out, sse);
    if (last) out += "0\r\n\r\n";
    write(std::move(out), last);
  }

  void on_events() {
    if (!flow) return;
    flow->wake->store(false);
    if (closed || flow->gen.done()) return;
    std::string sse = flow->pump();
    const bool done = flow->gen.done();
    if (done && flow->refused && !headers_sent) {
      flow->log(503);
      const std::string msg = flow->gen.outcome().error;
      flow.reset();
      respond_error(503, "overloaded_error", msg, true, "Retry-After: 1\r\n", false);
      return;
    }
    if (flow->stream) {
      if (done) flow->log(200);
      if (!sse.empty() || done) stream_out(sse, done);
      return;
    }
    if (!done) return;
    const Outcome& o = flow->gen.outcome();
    if (o.finish == engine::FinishReason::error) {
      // The engine stopped it (shutdown past the grace period) or could not run it.
      const bool shutdown = srv.sched.draining();
      flow->log(shutdown ? 503 : 500);
      respond_error(shutdown ? 503 : 500, shutdown ? "overloaded_error" : "server_error", o.error, shutdown, "", false);
      return;
    }
    flow->log(200);
    respond(200, "application/json", flow->responder->response(o));
  }
};

// ---- the server ----

void HttpServer::Impl::accept() {
  acceptor.async_accept([this](error_code ec, tcp::socket s) {
    if (stopped || draining || !acceptor.is_open()) return;
    if (ec) {
      // Out of file descriptors and the like: try again shortly instead of spinning.
      log::warn("accept failed: %s", ec.message().c_str());
      accept_retry.expires_after(std::chrono::milliseconds(100));
      accept_retry.async_wait([this](error_code e) {
        if (!e) accept();
      });
      return;
    }
    if (int(conns.size()) >= opt.max_connections) {
      conn_refusals++;
      static const std::string body = openai::error_body(
          ApiError(503, "overloaded_error", "too many open connections; retry later"));
      const std::string msg = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: " +
                              std::to_string(body.size()) + "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n" + body;
      error_code e;
      s.non_blocking(true, e);
      s.write_some(asio::buffer(msg), e);  // a fresh socket's send buffer takes it whole, or it is lost
      s.shutdown(tcp::socket::shutdown_both, e);
      s.close(e);
    } else {
      error_code e;
      s.set_option(tcp::no_delay(true), e);
      std::make_shared<Conn>(*this, std::move(s))->read_request();
    }
    accept();
  });
}

HttpServer::HttpServer(engine::Scheduler& sched, const text::Tokenizer& tok, ServerOptions opt)
    : impl_(std::make_unique<Impl>(*this, sched, tok, std::move(opt))) {}

HttpServer::~HttpServer() {
  stop();
  impl_.reset();
}

bool HttpServer::bind() {
  error_code ec;
  auto addr = asio::ip::make_address(impl_->opt.host, ec);
  if (ec) {
    // A host name: resolve it.
    tcp::resolver res(impl_->ioc);
    auto r = res.resolve(impl_->opt.host, std::to_string(impl_->opt.port), ec);
    if (ec || r.empty()) return false;
    addr = r.begin()->endpoint().address();
  }
  tcp::endpoint ep(addr, static_cast<unsigned short>(impl_->opt.port));
  tcp::acceptor& a = impl_->acceptor;
  a.open(ep.protocol(), ec);
  if (ec) return false;
  a.set_option(asio::socket_base::reuse_address(true), ec);
  a.bind(ep, ec);
  if (ec) return false;
  a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return false;
  port_ = a.local_endpoint().port();
  return port_ > 0;
}

void HttpServer::serve() {
  if (impl_->stopped) return;
  impl_->accept();
  impl_->ioc.run();
}

void HttpServer::begin_shutdown() {
  asio::post(impl_->ioc, [im = impl_.get()] {
    if (im->draining) return;
    im->draining = true;
    error_code ec;
    im->acceptor.close(ec);
    std::vector<Conn*> idle;
    for (Conn* c : im->conns)
      if (!c->gen_active && !c->writing) idle.push_back(c);
    for (Conn* c : idle) c->close();
  });
}

void HttpServer::stop() {
  if (!impl_) return;
  asio::post(impl_->ioc, [im = impl_.get()] {
    im->stopped = true;
    error_code ec;
    im->acceptor.close(ec);
    std::vector<Conn*> all(im->conns.begin(), im->conns.end());
    for (Conn* c : all) c->close();
    im->guard.reset();
    im->ioc.stop();
  });
}

std::string HttpServer::Impl::metrics_text() const {
  const auto& st = sched.stats();
  std::ostringstream o;
  auto metric = [&](const char* name, const char* type, const char* help, double v) {
    o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n' << name << ' ' << v << '\n';
  };
  metric("dsv4_http_requests_total", "counter", "HTTP requests received", double(http_requests.load()));
  metric("dsv4_http_errors_total", "counter", "HTTP responses with status >= 400", double(http_errors.load()));
  metric("dsv4_http_connections_open", "gauge", "open client connections", double(self.conns_open_.load()));
  metric("dsv4_http_connections_total", "counter", "client connections accepted", double(conns_total.load()));
  metric("dsv4_http_connection_refusals_total", "counter", "connections refused (503) past --max-connections",
         double(conn_refusals.load()));
  metric("dsv4_http_timeouts_total", "counter", "connections closed by a header, body or write deadline", double(timeouts.load()));
  metric("dsv4_client_gone_total", "counter", "generation requests whose client left before the answer (499)",
         double(client_gone.load()));
  metric("dsv4_overload_rejections_total", "counter", "requests rejected with 503/529 (queue full)", double(overloads.load()));
  metric("dsv4_requests_total", "counter", "generation requests accepted", double(st.requests.load()));
  metric("dsv4_requests_finished_total", "counter", "generation requests finished", double(st.finished.load()));
  metric("dsv4_requests_cancelled_total", "counter", "generation requests cancelled (client gone)", double(st.cancelled.load()));
  metric("dsv4_requests_running", "gauge", "sequences being generated", double(st.running.load()));
  metric("dsv4_queue_depth", "gauge", "generation requests not running (being prepared, queued or waiting): bounded by --queue",
         double(st.waiting.load()));
  metric("dsv4_prompt_tokens_total", "counter", "prompt tokens of admitted requests", double(st.prompt_tokens.load()));
  metric("dsv4_prompt_cached_tokens_total", "counter", "prompt tokens reused from the prefix cache", double(st.cached_tokens.load()));
  metric("dsv4_generated_tokens_total", "counter", "tokens generated", double(st.generated_tokens.load()));
  const double pt = double(st.prompt_tokens.load());
  metric("dsv4_prefix_cache_hit_ratio", "gauge", "cached / prompt tokens since start", pt > 0 ? double(st.cached_tokens.load()) / pt : 0.0);
  const double pus = double(st.prefill_us.load()), dus = double(st.decode_us.load());
  metric("dsv4_prefill_tokens_per_second", "gauge", "prefill rows per second of forward time",
         pus > 0 ? double(st.prefill_tokens.load()) * 1e6 / pus : 0.0);
  metric("dsv4_decode_tokens_per_second", "gauge", "decode rows per second of forward time",
         dus > 0 ? double(st.decode_tokens.load()) * 1e6 / dus : 0.0);
  metric("dsv4_forward_steps_total", "counter", "batched forward passes", double(st.steps.load()));
  metric("dsv4_kv_bytes_in_use", "gauge", "bytes of sequence state held by running sequences", double(st.kv_bytes.load()));
  metric("dsv4_prefix_cache_bytes", "gauge", "bytes held by the prefix cache", double(st.cache_bytes.load()));
  metric("dsv4_prefix_cache_entries", "gauge", "states held by the prefix cache", double(st.cache_entries.load()));
  o << sched.model().expert_store().metrics_text();  // issue 14: expert cache hits, bytes read, I/O stalls
  return o.str();
}

}  // namespace dsv4::server
