"""Layer 9, the command lines: argument parsing and printing, nothing more;
what a command does is in the layers below.

  main      `labkit`: the command table, one error-to-message mapping, run's
            fast parser and its config
  runtime   `labkit-runtime`: runc's command line (create, start, state,
            kill, delete, run, exec, spec, features)
  network   `labkit network`
  image     `labkit image` and friends (pull, push, save, load)

May import: every layer.
"""
