// dsv4 CLI entry point: flag parsing and the error boundary, nothing else.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>



#include "cli/commands.h"
#include "core/error.h"

namespace dsv4::cli {
int& exit_code() {
  static int code = 0;
  return code;
}
}  // namespace dsv4::cli

// Weak defaults so the CLI links while some commands are still being written.
#define DSV4_WEAK_REGISTER(name) \
  __attribute__((weak)) void dsv4::cli::register_##name(CLI::App&) {}
DSV4_WEAK_REGISTER(logits)
DSV4_WEAK_REGISTER(inspect)
DSV4_WEAK_REGISTER(tiny)
DSV4_WEAK_REGISTER(tokenize)
DSV4_WEAK_REGISTER(render)
DSV4_WEAK_REGISTER(parse)
DSV4_WEAK_REGISTER(run)
DSV4_WEAK_REGISTER(kv)
DSV4_WEAK_REGISTER(serve)
DSV4_WEAK_REGISTER(bench)

// A machine shared with other work must not cripple dsv4 (issue 11): libgomp's default spins
// ~300,000 iterations at every barrier, so with another process on a core each of the hundreds
// of parallel regions per decoded token waits for a descheduled spinner (measured 7x slower).
// Waiting threads therefore sleep (OMP_WAIT_POLICY=passive): on 2 loaded cores the tiny model
// prefilled at 1,160 tok/s with it, 330 with a 10,000-iteration spin and 28-270 with libgomp's
// default. libgomp reads its wait settings once, when it loads, so the default is set here and
// the binary runs itself again; OMP_WAIT_POLICY or GOMP_SPINCOUNT in the environment win.
static void default_openmp_waits(char** argv) {
#if defined(__linux__)
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
  if (::setenv("OMP_WAIT_POLICY", "passive", 1) != 0) return;
  ::execv("/proc/self/exe", argv);  // returns only on failure: go on with libgomp's defaults
#else
  (void)argv;
#endif
}

int main(int argc, char** argv) {
  default_openmp_waits(argv);
  CLI::App app{"dsv4: DeepSeek-V4 inference engine and API server"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "dsv4 0.1.0");
  using namespace dsv4::cli;
  register_logits(app);
  register_inspect(app);
  register_tiny(app);
  register_tokenize(app);
  register_render(app);
  register_parse(app);
  register_run(app);
  register_kv(app);
  register_serve(app);
  register_bench(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const dsv4::Error& e) {
    std::fprintf(stderr, "dsv4: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "dsv4: error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dsv4: error: %s\n", e.what());
    return 1;
  }
  return exit_code();
}
