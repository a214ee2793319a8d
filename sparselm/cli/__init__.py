"""The ``sparselm`` command line: solve BAL problems and g2o pose graphs, inspect them, manage the
official datasets.

Commands (each has ``--help``)::

    sparselm solve [FILE_OR_NAME] [options]   solve a BAL problem or g2o pose graph (no argument: the built-in one)
    sparselm info [FILE_OR_NAME] [--json]     sizes, track lengths, co-visibility, initial cost
    sparselm datasets list [--family F]       the official BAL problems and which are found locally
    sparselm datasets fetch NAME [--force]    download one into the cache (sha256 verified)
    sparselm profile [FILE_OR_NAME] [options] where a solve spends its time and memory
    sparselm doctor [--json] [--strict]       versions, BLAS in use, CPU, threads, numba cache

FILE_OR_NAME is a path (plain or .bz2; a g2o file is recognised by its name or first record, see
:mod:`sparselm.formats`) or the name of an official problem
(``problem-16-22106-pre``, optionally ``dubrovnik/problem-16-22106-pre``), looked for under the
folders of ``$SPARSELM_DATA`` and then in the download cache (``$SPARSELM_CACHE``, else
``~/.cache/sparselm``); see :func:`sparselm.bal.registry.resolve`.

``sparselm solve`` prints a header (input, sizes, linear solver, threads), the per-iteration table
as the solve runs (by default, also when stdout is not a terminal; ``-q`` turns it off), then the
full report (``-q``: the one-line brief report). ``-v`` adds the thread/BLAS environment and all
options used. When the table is not shown on the terminal (``-q``, or stdout redirected) and stderr
is a terminal, a one-line progress (iteration, cost, elapsed time) is refreshed on stderr at most
every 2 s. ``--output`` writes the optimised problem as a BAL file (bzip2 when the name ends in
.bz2) and ``--report`` the JSON report below; both writes are atomic, and neither may name the
input file unless ``--force`` is given. ``--covariance cameras|points|all`` computes the covariance
blocks of the solution (:mod:`sparselm.covariance`; cameras = the groups not eliminated, points =
the eliminated ones) and ``--covariance-output FILE.npz`` writes them (atomically): one
(n_blocks, k, k) array per group, ``<group>_indices``, ``<group>_undefined``, ``scale`` and
``null_space_dimension``.

Exit status: 0 when the solve ended normally (converged, iteration or time limit, callback);
1 when the solver failed (the message is on stderr; outputs are still written with the best
point); 2 for a usage or input error (bad file, unknown dataset, invalid option, non-finite
residual at the start), reported as one line ``sparselm: error: <message>`` on stderr; 130 when
interrupted by Ctrl-C (during the solve the best point so far is still written to the outputs).
Set ``SPARSELM_TRACEBACK=1`` (or pass ``--traceback`` before the command) to see the traceback of
an input error instead.

Report JSON (``sparselm solve --report report.json``), a stable contract; ``schema_version`` is
bumped on any incompatible change. Costs are 1/2 sum of squared (whitened, loss-corrected)
residuals; times are seconds; NaN and infinity are written as null.

=========================  ==================================================================
key                        meaning
=========================  ==================================================================
``schema_version``         1
``sparselm_version``       version of the package that wrote the report
``command``                the arguments of the command line (list of strings)
``input``                  absolute path of the input file, or ``"built-in"``
``output``                 path of the solution written with ``--output``, or null
``problem``                sizes: ``cameras``, ``points``, ``observations``, ``parameters``,
                           ``free_parameters``, ``residuals``, ``parameter_groups``
                           {name: {blocks, block_size, constant_blocks, constant_coordinates,
                           eliminate}}, ``residual_groups`` {name: {blocks, residual_size, type,
                           loss}}
``initial_cost``           cost at the start
``final_cost``             cost at the returned (best) point
``initial_rms_px``         RMS reprojection error (pixels, unweighted) at the start
``final_rms_px``           the same at the returned point
``iterations``             list, one per LM iteration (iteration 0 is the initial evaluation):
                           ``iteration``, ``cost``, ``cost_change``, ``gradient_max_norm``,
                           ``step_norm``, ``tr_ratio``, ``tr_radius``,
                           ``linear_solver_iterations``, ``iteration_time_s``,
                           ``total_time_s``, ``step_is_successful``, ``step_is_valid``
``n_iterations``           LM iterations done (iteration 0 not counted)
``successful_steps``       accepted steps
``unsuccessful_steps``     rejected steps (invalid ones included)
``invalid_steps``          steps whose linear solve failed or whose model decrease was not positive
``termination``            ``convergence``, ``no_convergence`` (iteration/time limit),
                           ``user_success`` (callback), ``interrupted`` (Ctrl-C) or ``failure``
``message``                why the solver stopped, in words
``ok``                     true for convergence, no_convergence and user_success
``exit_status``            the exit status of the command (0, 1 or 130)
``total_time_s``           wall time of the solve, setup included
``setup_time_s``           structure and symbolic analysis
``setup_phases``           its steps in seconds: ``layout``, ``solver_choice``,
                           ``memory_estimate``, ``evaluator``, ``linear_solver``
``phases``                 per-phase time table {phase: {``seconds``, ``calls``}} (jacobian,
                           gradient, assembly, schur_complement, factorization, solve, ...)
                           and, with ``--covariance``, ``covariance`` (the whole computation)
``covariance``             with ``--covariance``: ``groups`` {name: {blocks, tangent_size,
                           undefined}}, ``gauge`` {mode, null_space_dimension,
                           fixed_coordinates, rank}, ``scale``, ``seconds``, ``phases`` (its
                           own: covariance_linearization, _gauge, _factorization,
                           _selected_inversion, _blocks), ``warning``, ``output`` (the .npz)
``linear_solver``          the linear solver's name and statistics (sizes, ordering, nnz)
``options_given``          the solver options as given (SolverOptions fields)
``options_used``           the options after resolution (``linear_solver`` 'auto' -> the one
                           chosen, ``threads`` None -> the number used)
``environment``            threads and BLAS settings of the run
=========================  ==================================================================

Extension hook: if a module ``sparselm.cli.profile`` exists, its ``register(subparsers)`` is
called with the argparse sub-parsers object; each command it adds must
``set_defaults(func=handler)`` with ``handler(args) -> int`` (the exit status). It may raise the
input errors listed above; :func:`main` reports them like its own.
"""
from sparselm.cli.main import main

__all__ = ["main"]
