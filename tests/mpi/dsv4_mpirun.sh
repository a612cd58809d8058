#!/bin/sh
# `dsv4 ARGS` as an MPI job of DSV4_MPI_NP ranks (default 2): what the e2e SDK tests spawn when
# they run against the server under MPI (ctest mpi_e2e_sdk). mpirun forwards SIGTERM to rank 0,
# which stops the server and tells the other ranks to quit.
exec "${DSV4_MPIRUN:-mpirun}" --oversubscribe -np "${DSV4_MPI_NP:-2}" "${DSV4_MPI_BINARY:?}" "$@"
