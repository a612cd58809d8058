// dsv4 server: the HTTP/1.1 front end, event-driven (Boost.Asio + Boost.Beast's request parser).
// One I/O thread owns every connection: it accepts, reads requests under deadlines, writes each
// response in one send (TCP_NODELAY), streams SSE, and watches a waiting client's socket so a
// gone client cancels its sequence. Slow or idle clients cost a socket and a few KiB, never a
// thread. Work that can take long (JSON parse + prompt rendering) runs on a small worker pool;
// model work stays on the scheduler thread (engine/scheduler.h), which wakes the I/O thread
// through each job's event channel.
//
// Limits (ServerOptions): connections (beyond: 503 + close), header and body deadlines, idle
// keep-alive time and requests per connection, header and body size (every transfer encoding:
// 431 / 413). Admission: every generation request not running counts against the scheduler's
// queue (503, Anthropic 529, with Retry-After).
// Shutdown: begin_shutdown() stops accepting and closes idle connections; requests on open ones
// get 503; stop() ends everything.
#pragma once
#include <atomic>
#include <cstddef>
#include <memory>
#include <string>

#include "engine/scheduler.h"
#include "server/api.h"
#include "text/tokenizer.h"

namespace dsv4::server {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string api_key;          // empty: no auth
  ServedModel model;
  int keepalive_ms = 2000;      // SSE comment while nothing else was written for this long
  int workers = 2;              // threads that parse and render requests
  bool log_requests = true;
  int max_connections = 1024;   // open connections at most; more are answered 503 and closed
  int header_timeout_ms = 10000;   // a request's header must be complete this long after it began
  int body_timeout_ms = 60000;     // its body this long after the header
  int idle_timeout_ms = 5000;      // a kept-alive connection may wait this long for its next request
  int write_timeout_ms = 30000;    // one write (a response, SSE frames) must complete within this
  int keepalive_requests = 1000;   // requests per connection, then it is closed
  size_t max_header_bytes = size_t(64) << 10;
  size_t max_body_bytes = size_t(64) << 20;  // chunked bodies too
  size_t trim_after_bytes = size_t(1) << 20;  // malloc_trim after a request body this big
};

class HttpServer {
 public:
  HttpServer(engine::Scheduler& sched, const text::Tokenizer& tok, ServerOptions opt);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  // Binds (port 0 = any free port). Returns false when binding fails.
  bool bind();
  void serve();  // runs the I/O loop on the calling thread until stop()
  // Stops accepting, closes idle connections; requests read from now on are answered 503 and
  // their connections closed. Running generations go on (the caller decides how long).
  void begin_shutdown();
  // Closes every connection and ends serve(). Thread-safe, idempotent.
  void stop();
  int port() const { return port_; }
  // Generation requests read and not yet answered completely (for the shutdown wait).
  int active_requests() const { return active_.load(); }
  int open_connections() const { return conns_open_.load(); }

  struct Impl;
  struct Conn;

 private:
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
  std::atomic<int> active_{0}, conns_open_{0};
};

}  // namespace dsv4::server
