// dsv4 server: HTTP front end over cpp-httplib. Routes (with and without /v1), auth, SSE and the
// per-request wait loop, /metrics, one log line per request. HTTP threads only parse, enqueue
// and format; the scheduler thread (engine/scheduler.h) does all model work.
#pragma once
#include <atomic>
#include <memory>
#include <string>

#include "engine/scheduler.h"
#include "server/api.h"
#include "text/tokenizer.h"

namespace httplib {
class Server;
}

namespace dsv4::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;          // empty: no auth
  ServedModel model;
  int keepalive_ms = 2000;      // SSE comment while nothing else was written for this long
  int http_threads = 64;
  bool log_requests = true;
};

class HttpServer {
 public:
  HttpServer(engine::Scheduler& sched, const text::Tokenizer& tok, ServerOptions opt);
  ~HttpServer();
  // Binds (port 0 = any free port) and serves until stop(). Returns false when binding fails.
  bool bind();
  void serve();  // blocks
  void stop();
  int port() const { return port_; }

 private:
  struct Flow;
  enum class Dialect { openai_chat, openai_completion, openai_responses, anthropic };
  void routes();
  void handle_generate(Dialect d, const void* req, void* res);
  std::string metrics_text() const;

  engine::Scheduler& sched_;
  const text::Tokenizer& tok_;
  ServerOptions opt_;
  std::unique_ptr<httplib::Server> svr_;
  int port_ = 0;
  std::atomic<uint64_t> http_requests_{0}, http_errors_{0}, overloads_{0};
  engine::TokenRunCache runs_;
  engine::ReasoningMemo memo_;
};

}  // namespace dsv4::server
