"""The words a translation uses: one rule per language, written down in its
glossary (notebooks/es/glosario.md, "Una sola variante") and enforced here
by the translation checks, on every translated text a student reads.

Spanish is written for the seed's readers: neutral Latin-American, *tú*.
Spain's words have a neutral one that every Spanish reader understands
(*archivo*, *la terminal*, *computadora*), and the *vosotros* forms are not
used. *registry* and *tag* stay the loanwords classrooms use, so that
*registro* (a recorded fact) and *etiqueta* (the seed's word, SELinux's
labels) each keep one meaning.

A line quoting the seed (Markdown "> *…*") is its author's, left as it is.
"""

import re

# language -> [(pattern, what to write instead)]
RULES = {
    "es": [
        (r"\bficheros?\b", "archivo, archivos"),
        (r"\b(?:el|un|del|al|este|ese) terminal\b", "la terminal, una terminal"),
        (r"\bordenador(?:es)?\b", "computadora"),
        (r"\b(?:vosotros|vosotras)\b", "tú"),
        (r"\b\w+(?:áis|éis)\b", "la forma de tú (tienes, puedes)"),
        (r"\bcoger\b|\bcoge\b", "tomar, toma"),
        (r"\bregistros?\s+(?:de|del)\s+(?:laboratorio|imágenes)\b|\b(?:el|un|del|al)\s+registro\b(?!\s+de\s+hechos)",
         "el registry (registro es un hecho registrado)"),
        (r"\betiquetas?\s*\(tag\)|\b(?:la|una|otra|cada)\s+etiqueta\s+(?:de\s+la\s+imagen|o\s+un\s+digest)",
         "el tag, los tags (etiqueta: la palabra del texto semilla, las de SELinux)"),
    ],
}

_SEED_QUOTE = re.compile(r"^\s*>")


def problems(lang, text):
    """[(word found, what to write instead)] in ``text``: nothing on lines
    that quote the seed, nor in `code` spans or fenced blocks."""
    rules = [(re.compile(p, re.IGNORECASE), fix) for p, fix in RULES.get(lang, ())]
    found, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or _SEED_QUOTE.match(line):
            continue
        prose = re.sub(r"`[^`]*`", "", line)
        for pattern, fix in rules:
            found += [(m.group(0), fix) for m in pattern.finditer(prose)]
    return found
