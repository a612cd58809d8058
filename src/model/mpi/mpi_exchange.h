// Expert parallelism over MPI (issue 15), built only with DSV4_MPI (CMake option; needs OpenMPI or
// another MPI-3 library). main() makes one MpiJob:
//   - not started by mpirun (no OMPI_COMM_WORLD_SIZE / PMI_SIZE / PMIX_RANK): nothing happens, the
//     process is the ordinary single-process dsv4;
//   - rank 0 of N > 1: runs the command as usual with an MpiExchange installed as the process's
//     ExpertExchange; every ForwardPass it builds attaches the other ranks to its model;
//   - ranks > 0: run_worker(): load the checkpoint rank 0 names (or DSV4_EP_MODEL, the same model
//     at another path on this host), hold their share of the experts, and run them for each MoE
//     layer rank 0 sends, until rank 0 says quit (its exit, error or not).
// Only rank 0 keeps sequence state, runs attention and samples: the workers are stateless expert
// servers, so nothing in the engine (scheduler, prefix cache, truncation) needs mirroring.
//
// Placement and timeouts: model::ExpertParallelOptions (rank 0's command-line flags).
// Failure: any MPI error, a worker that cannot load its share, or no answer within --ep-timeout
// seconds (default 120; start-up: --ep-load-timeout, default 3600) ends the whole job (MPI_Abort)
// after an error naming the rank and the cause; a rank that dies is reported by mpirun, which then
// stops the others.
#pragma once
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace dsv4::model {

class MpiExchange;

class MpiJob {
 public:
  MpiJob(int* argc, char*** argv);
  ~MpiJob();  // rank 0: tells the workers to quit, then MPI_Finalize
  bool active() const { return size_ > 1; }
  bool worker() const { return active() && rank_ > 0; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  // Ranks > 0: serve rank 0 until it says quit; returns the process exit code.
  int run_worker();

 private:
  bool initialized_ = false;
  int rank_ = 0, size_ = 1;
  std::unique_ptr<MpiExchange> exchange_;
};

}  // namespace dsv4::model
