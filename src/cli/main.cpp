// dsv4 CLI entry point: flag parsing and the error boundary, nothing else.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <exception>



#include "cli/commands.h"
#include "core/error.h"
#ifdef DSV4_WITH_MPI
#include "model/mpi/mpi_exchange.h"
#endif

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

int main(int argc, char** argv) {
#ifdef DSV4_WITH_MPI
  // Under mpirun (issue 15): ranks > 0 serve rank 0's experts; rank 0 runs the command below and
  // tells them to quit when it returns. Not under mpirun: nothing changes.
  dsv4::model::MpiJob mpi(&argc, &argv);
  if (mpi.worker()) return mpi.run_worker();
#endif
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
