#include "server/http_server.h"

#include <httplib.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <sstream>

#include "core/log.h"
#include "server/generation.h"

namespace dsv4::server {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

bool is_anthropic_path(const std::string& p) { return p.find("/messages") != std::string::npos; }

std::string error_for(const std::string& path, const ApiError& e) {
  return is_anthropic_path(path) ? anthropic::error_body(e) : openai::error_body(e);
}

}  // namespace

// One request's generation: shared between the handler and (streaming) the content provider.
struct HttpServer::Flow {
  std::shared_ptr<engine::Job> job;
  Generation gen;
  std::unique_ptr<Responder> responder;
  std::string id, path, model;
  bool stream = false;
  Clock::time_point t0 = Clock::now();
  double ttft_ms = -1;
  bool logged = false;

  Flow(const text::Tokenizer& tok, PreparedRequest& pr)
      : gen(tok, pr.gen.output.mode, pr.want_logprobs), responder(std::move(pr.responder)), model(pr.model), stream(pr.stream) {}

  // Reads what the engine produced so far (waiting up to `wait`); returns the SSE text for it
  // (streaming) or "" (non-stream). Sets *any when events arrived.
  engine::TokenRunCache* runs = nullptr;
  engine::ReasoningMemo* memo = nullptr;
  bool anthropic = false;

  std::string pump(std::chrono::milliseconds wait, bool* any) {
    std::vector<engine::TokenEvent> evs;
    *any = job->events.wait_pop(&evs, wait);
    if (!*any) return "";
    std::vector<text::ParseEvent> pe;
    std::vector<TokenLogprobInfo> lp;
    std::string out;
    for (const auto& e : evs) {
      const bool first = !gen.started();
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

  void log(int status) {
    if (logged) return;
    logged = true;
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

HttpServer::HttpServer(engine::Scheduler& sched, const text::Tokenizer& tok, ServerOptions opt)
    : sched_(sched), tok_(tok), opt_(std::move(opt)), svr_(std::make_unique<httplib::Server>()) {
  const int n = opt_.http_threads;
  svr_->new_task_queue = [n] { return new httplib::ThreadPool(size_t(n)); };
  svr_->set_keep_alive_timeout(5);
  svr_->set_read_timeout(60);
  svr_->set_write_timeout(30);
  svr_->set_payload_max_length(size_t(64) << 20);
  routes();
}

HttpServer::~HttpServer() { stop(); }

bool HttpServer::bind() {
  if (opt_.port == 0) port_ = svr_->bind_to_any_port(opt_.host.c_str());
  else port_ = svr_->bind_to_port(opt_.host.c_str(), opt_.port) ? opt_.port : -1;
  return port_ > 0;
}

void HttpServer::serve() { svr_->listen_after_bind(); }

void HttpServer::stop() {
  if (svr_) svr_->stop();
}

void HttpServer::routes() {
  httplib::Server& s = *svr_;

  // Auth and counting for every request; health and metrics stay open.
  s.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    http_requests_++;
    if (opt_.api_key.empty() || req.path == "/" || req.path == "/health" || req.path == "/metrics" || req.path == "/v1/health")
      return httplib::Server::HandlerResponse::Unhandled;
    std::string key;
    const std::string auth = req.get_header_value("Authorization");
    if (auth.rfind("Bearer ", 0) == 0) key = auth.substr(7);
    if (key.empty()) key = req.get_header_value("x-api-key");
    if (key == opt_.api_key) return httplib::Server::HandlerResponse::Unhandled;
    ApiError e(401, "authentication_error", key.empty() ? "missing API key (Authorization: Bearer or x-api-key)" : "invalid API key");
    res.status = 401;
    res.set_content(error_for(req.path, e), "application/json");
    return httplib::Server::HandlerResponse::Handled;
  });

  s.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    if (res.status >= 400) http_errors_++;
    if (!opt_.log_requests) return;
    // Generation routes log their own line (with tokens and timings) when they succeed.
    if (res.status < 400 && req.method == "POST" && req.path.find("count_tokens") == std::string::npos) return;
    log::info("%s %s status=%d", req.method.c_str(), req.path.c_str(), res.status);
  });

  s.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    ApiError e(res.status, res.status == 404 ? "not_found_error" : "invalid_request_error",
               res.status == 404 ? "no route for " + req.method + " " + req.path : "request failed", "",
               res.status == 404 ? "unknown_route" : "");
    res.set_content(error_for(req.path, e), "application/json");
  });

  auto health = [this](const httplib::Request&, httplib::Response& res) {
    const auto& st = sched_.stats();
    res.set_content(openai::health_body(opt_.model, "ok", int(st.running.load()), int(st.waiting.load())), "application/json");
  };
  // The root answers (GET and HEAD): clients probe the base URL before their first request.
  s.Get("/", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content("dsv4 serve: " + opt_.model.name + " (OpenAI: /v1/chat/completions, /v1/responses; Anthropic: /v1/messages)\n",
                    "text/plain");
  });
  s.Get("/health", health);
  s.Get("/v1/health", health);

  auto models = [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(openai::models_body(opt_.model), "application/json");
  };
  s.Get("/v1/models", models);
  s.Get("/models", models);
  auto model = [this](const httplib::Request& req, httplib::Response& res) {
    const std::string name = req.matches[1];
    if (!opt_.model.resolve(name) || name.empty()) {
      res.status = 404;
      res.set_content(openai::error_body(ApiError(404, "not_found_error", "The model '" + name + "' does not exist")), "application/json");
      return;
    }
    res.set_content(openai::model_body(opt_.model), "application/json");
  };
  s.Get(R"(/v1/models/(.+))", model);
  s.Get(R"(/models/(.+))", model);

  auto gen = [this](Dialect d) {
    return [this, d](const httplib::Request& req, httplib::Response& res) { handle_generate(d, &req, &res); };
  };
  // /beta: DeepSeek's base URL for strict tools and FIM (https://api.deepseek.com/beta).
  for (const char* p : {"/v1/chat/completions", "/chat/completions", "/beta/chat/completions", "/beta/v1/chat/completions"})
    s.Post(p, gen(Dialect::openai_chat));
  for (const char* p : {"/v1/completions", "/completions", "/beta/completions", "/beta/v1/completions"})
    s.Post(p, gen(Dialect::openai_completion));
  for (const char* p : {"/v1/responses", "/responses"}) s.Post(p, gen(Dialect::openai_responses));
  auto stored_response = [](const httplib::Request& req, httplib::Response& res) {
    try {
      res.set_content(responses::get(req.matches[1]), "application/json");
    } catch (const ApiError& e) {
      res.status = e.status;
      res.set_content(openai::error_body(e), "application/json");
    }
  };
  s.Get(R"(/v1/responses/([^/]+))", stored_response);
  s.Get(R"(/responses/([^/]+))", stored_response);
  for (const char* p : {"/v1/messages", "/messages"}) s.Post(p, gen(Dialect::anthropic));

  auto count = [this](const httplib::Request& req, httplib::Response& res) {
    try {
      DialectContext ctx{tok_, opt_.model, "", &runs_, &memo_};
      res.set_content(anthropic::count_tokens(req.body, ctx), "application/json");
    } catch (const ApiError& e) {
      res.status = e.status;
      res.set_content(anthropic::error_body(e), "application/json");
    }
  };
  s.Post("/v1/messages/count_tokens", count);
  s.Post("/messages/count_tokens", count);

  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(), "text/plain; version=0.0.4");
  });
}

void HttpServer::handle_generate(Dialect d, const void* req_p, void* res_p) {
  const auto& req = *static_cast<const httplib::Request*>(req_p);
  auto& res = *static_cast<httplib::Response*>(res_p);
  const std::string id = new_id(d == Dialect::anthropic ? "msg_" : d == Dialect::openai_chat ? "chatcmpl-"
                                 : d == Dialect::openai_responses ? "resp_" : "cmpl-");
  DialectContext ctx{tok_, opt_.model, id, &runs_, &memo_};
  PreparedRequest pr;
  try {
    switch (d) {
      case Dialect::openai_chat: pr = openai::prepare_chat(req.body, ctx); break;
      case Dialect::openai_completion: pr = openai::prepare_completion(req.body, ctx); break;
      case Dialect::openai_responses: pr = responses::prepare(req.body, ctx); break;
      case Dialect::anthropic: pr = anthropic::prepare_messages(req.body, ctx); break;
    }
  } catch (const ApiError& e) {
    res.status = e.status;
    res.set_content(error_for(req.path, e), "application/json");
    return;
  }
  auto flow = std::make_shared<Flow>(tok_, pr);
  flow->id = id;
  flow->path = req.path;
  flow->runs = &runs_;
  flow->memo = &memo_;
  flow->anthropic = d == Dialect::anthropic;
  flow->job = sched_.submit(std::move(pr.gen));
  if (!flow->job) {
    overloads_++;
    ApiError e(503, "overloaded_error", "server overloaded: the request queue is full; retry later");
    res.status = 503;
    res.set_header("Retry-After", "1");
    res.set_content(error_for(req.path, e), "application/json");
    return;
  }
  const auto keepalive = std::chrono::milliseconds(opt_.keepalive_ms);

  if (!flow->stream) {
    bool any = false;
    while (!flow->gen.done()) flow->pump(std::chrono::milliseconds(1000), &any);
    const Outcome& o = flow->gen.outcome();
    if (o.finish == engine::FinishReason::error) {
      ApiError e(500, "server_error", o.error);
      res.status = 500;
      res.set_content(error_for(req.path, e), "application/json");
    } else {
      res.set_content(flow->responder->response(o), "application/json");
    }
    flow->log(res.status < 0 ? 200 : res.status);
    return;
  }

  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [flow, keepalive](size_t, httplib::DataSink& sink) {
        auto last_write = Clock::now();
        while (!flow->gen.done()) {
          bool any = false;
          std::string out = flow->pump(std::chrono::milliseconds(200), &any);
          if (out.empty() && Clock::now() - last_write >= keepalive) out = ": keep-alive\n\n";
          if (out.empty()) continue;
          if (!sink.write(out.data(), out.size())) {  // client gone: free the sequence
            flow->job->cancel();
            flow->log(499);
            return false;
          }
          last_write = Clock::now();
        }
        flow->log(200);
        sink.done();
        return true;
      },
      [flow](bool success) {
        if (!success) {
          flow->job->cancel();
          flow->log(499);
        }
      });
}

std::string HttpServer::metrics_text() const {
  const auto& st = sched_.stats();
  std::ostringstream o;
  auto metric = [&](const char* name, const char* type, const char* help, double v) {
    o << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n' << name << ' ' << v << '\n';
  };
  metric("dsv4_http_requests_total", "counter", "HTTP requests received", double(http_requests_.load()));
  metric("dsv4_http_errors_total", "counter", "HTTP responses with status >= 400", double(http_errors_.load()));
  metric("dsv4_overload_rejections_total", "counter", "requests rejected with 503 (queue full)", double(overloads_.load()));
  metric("dsv4_requests_total", "counter", "generation requests accepted", double(st.requests.load()));
  metric("dsv4_requests_finished_total", "counter", "generation requests finished", double(st.finished.load()));
  metric("dsv4_requests_cancelled_total", "counter", "generation requests cancelled (client gone)", double(st.cancelled.load()));
  metric("dsv4_requests_running", "gauge", "sequences being generated", double(st.running.load()));
  metric("dsv4_queue_depth", "gauge", "requests waiting for admission", double(st.waiting.load()));
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
  return o.str();
}

}  // namespace dsv4::server
