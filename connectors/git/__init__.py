"""Git: local mirrors of the repositories deployments name, and what each deployment shipped.

Everything goes through the `git` command line, so the credentials users already set
up for git (credential helpers, `.netrc`, `GIT_CONFIG_*` variables, SSH keys) work as
they are, and nothing here ever sees or stores a secret.
"""
