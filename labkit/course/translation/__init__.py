"""The translators' tools (see i18n/README.md): what to translate and
whether a translation still matches its English source — ``messages`` for
labkit's own texts, ``notebooks`` for the course. labkit.i18n, which shows
a translation, never imports this package."""
