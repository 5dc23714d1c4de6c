"""Find who is speaking in an attributed passage, and whether they hold public office.

Rule-based: a role noun with a proper name next to a speech verb or quotation marks
("el general retirado Melquiades Rosas Treviño aseguró", "según la gobernadora Ana Ruiz",
"Juan Pérez, director de Justicia Militar, dijo", "Governor Ana Ruiz said").
"""

from __future__ import annotations

import re

_NAME = r"[A-ZÁÉÍÓÚÑ][\wáéíóúñü'’.-]+(?:\s+(?:de|del|de la|y|van|von)?\s*[A-ZÁÉÍÓÚÑ][\wáéíóúñü'’-]+){0,4}"
_OFFICIAL_ROLES = [
    # Spanish
    "presidente de la república", "presidenta de la república", "presidente municipal", "presidenta municipal",
    "gobernador", "gobernadora", "secretario", "secretaria", "subsecretario", "subsecretaria", "general",
    "almirante", "coronel", "capitán", "comandante", "alcalde", "alcaldesa", "diputado", "diputada",
    "senador", "senadora", "legislador", "legisladora", "fiscal", "procurador", "procuradora", "ministro",
    "ministra", "canciller", "vocero presidencial", "vocera presidencial", "vocero del gobierno",
    "vocera del gobierno", "regidor", "regidora", "síndico", "síndica", "juez", "jueza", "magistrado",
    "magistrada", "mandatario", "mandataria", "titular", "funcionario", "funcionaria", "jefe de la policía",
    "comisario", "comisionado", "comisionada", "edil", "director de", "directora de", "coordinador de comunicación",
    "presidente", "presidenta",
    # English
    "governor", "secretary", "undersecretary", "minister", "general", "admiral", "colonel", "mayor",
    "senator", "deputy", "lawmaker", "congressman", "congresswoman", "prosecutor", "attorney general",
    "president", "spokesman", "spokeswoman", "spokesperson", "official", "police chief", "judge",
]
_OTHER_ROLES = [
    "empresario", "empresaria", "líder", "lider", "dirigente", "obispo", "arzobispo", "sacerdote", "párroco",
    "columnista", "analista", "periodista", "conductor", "conductora", "locutor", "locutora", "académico",
    "académica", "abogado", "abogada", "vocero", "vocera", "representante", "ganadero", "productor",
    "director", "directora", "comisariado", "integrante", "coordinador", "coordinadora", "fundador", "fundadora", "directivo",
    "businessman", "businesswoman", "executive", "ceo", "columnist", "commentator", "host", "bishop",
    "lawyer", "leader", "chairman", "activist", "analyst",
]
# Roles that name a private body even when the noun ("presidente") is an office elsewhere.
_PRIVATE_CONTEXT = re.compile(
    r"c[aá]mara|coparmex|concanaco|canacintra|consejo coordinador|empresa|asociaci[oó]n|sindicato|"
    r"partido|dirigencia|club|fundaci[oó]n|iglesia|di[oó]cesis|chamber|company|association|party|union|"
    r"ganader|agr[ií]cola|minera|consejo empresarial|federaci[oó]n|organizaci[oó]n|colectivo|centro de derechos|"
    r"\bong\b|observatorio|radio comunitaria|comisariado|ejid|asamblea|red de|movimiento|frente|universidad", re.I)
_SPEECH = (r"(?:asegur[oó]|dijo|afirm[oó]|declar[oó]|acus[oó]|señal[oó]|sostuvo|advirti[oó]|calific[oó]|"
           r"denunci[oó]|insisti[oó]|expres[oó]|coment[oó]|manifest[oó]|lament[oó]|arremeti[oó]|"
           r"acusa|asegura|afirma|dice|sostiene|advierte|señala|califica|tach[oó]|llam[oó]|"
           r"record[oó]|respondi[oó]|inform[oó]|explic[oó]|subray[oó]|reiter[oó]|agreg[oó]|añadi[oó]|indic[oó]|"
           r"expuso|plante[oó]|cuestion[oó]|critic[oó]|arremeter|arremete|escribi[oó]|public[oó]|tuite[oó]|"
           r"según|de acuerdo con|para\s+(?:el|la)\b|"
           r"said|says|claimed|told|accused|called|argued|stated|warned|insisted|added|wrote|posted|according to)")
# words that end a role phrase: "el general [en funciones] Juan" is fine, "el general dijo que el Centro" is not
_FUNCTION_WORDS = r"(?:que|y|e|o|u|el|la|los|las|un|una|al|a|en\s+(?:contra|entrevista)|con|por|para|se|su|sus|and|the|that|of\s+the)"
_ROLE_ALT = "|".join(sorted({re.escape(r) for r in _OFFICIAL_ROLES + _OTHER_ROLES}, key=len, reverse=True))
# "el general retirado Melquiades Rosas" / "Governor Ana Ruiz" / "la diputada local Rosa Díaz"
# a role noun and up to five lower-case words of it ("general retirado", "secretario de Seguridad de")
_ROLE_PHRASE = (rf"\b(?P<role>(?i:{_ROLE_ALT})(?:\s+(?:de\s+(?:la|los|las)|"
                rf"(?![A-ZÁÉÍÓÚÑ]|{_FUNCTION_WORDS}\b|{_SPEECH})[\wáéíóúñ]+)){{0,5}}?)")
_ROLE_THEN_NAME = re.compile(rf"{_ROLE_PHRASE}\s+(?P<name>{_NAME})")
# "el director de la organización, Isidoro Ramírez Solano, recordó"
_ROLE_COMMA_NAME = re.compile(rf"{_ROLE_PHRASE},\s+(?P<name>{_NAME}),")
# "Juan Pérez Luna, director de Justicia Militar, dijo" / "Ana Ruiz, the governor, said"
_NAME_COMMA_ROLE = re.compile(rf"(?P<name>{_NAME}),\s+(?P<role>[^,.;:]{{3,90}}?),")


def _is_name(text: str) -> bool:
    words = text.split()
    return bool(words) and all(w[0].isupper() or w in ("de", "del", "la", "y") for w in words)


def find_speaker(text: str) -> tuple[str, bool]:
    """Return ``(speaker as written, is_public_official)`` or ``("", False)``.

    First the sentences with a speech verb or a quotation; then, when the passage quotes or
    reports speech anywhere, the first role-and-name mention of the passage (the name is often
    introduced one sentence before the quote: "El alcalde X encabezó un mitin. «…», dijo").
    """
    sentences = re.split(r"(?<=[.!?])\s+", text)
    speechy = [s for s in sentences if re.search(_SPEECH, s, re.I) or re.search(r"[\"“”«»]", s)]
    for sentence in speechy:
        found = _speaker_in(sentence)
        if found:
            return found
    if speechy:
        for sentence in sentences:
            found = _speaker_in(sentence)
            if found:
                return found
    return "", False


def _speaker_in(sentence: str) -> tuple[str, bool] | None:
    best: tuple[int, str, str] | None = None
    for m in _NAME_COMMA_ROLE.finditer(sentence):
        role = m.group("role").strip()
        if re.match(rf"\s*{_NAME},", sentence[m.end():]):
            continue  # "En Tlapa, el director de la organización, Isidoro Ramírez," : the name comes after
        if _role_kind(role) is not None and _is_name(m.group("name")):
            best = _better(best, (m.start(), f"{m.group('name')}, {role}", role))
    for m in _ROLE_COMMA_NAME.finditer(sentence):
        if _is_name(m.group("name")) and _role_kind(m.group("name")) is None:
            role = m.group("role").strip()
            best = _better(best, (m.start(), f"{role}, {m.group('name').strip()}", role))
    for m in _ROLE_THEN_NAME.finditer(sentence):
        name = m.group("name").strip()
        if not _is_name(name) or len(name) < 3:
            continue
        tail = sentence[m.end():m.end() + 90]
        role = m.group("role").strip()
        speaker = sentence[m.start():m.end()]
        apposition = re.match(rf",\s*(?P<name>{_NAME}),", tail)
        context = re.match(r",\s*([^,.;:]{3,80}),", tail)
        if apposition and _is_name(apposition.group("name")) and _role_kind(apposition.group("name")) is None:
            # "el secretario de Seguridad de Guerrero, Rolando Díaz," : the organisation, then the name
            role = speaker
            speaker += f", {apposition.group('name')}"
        elif context and _PRIVATE_CONTEXT.search(context.group(1)):
            speaker += f", {context.group(1).strip()}"
            role += " " + context.group(1)
        best = _better(best, (m.start(), speaker.strip(), role))
    if best is None:
        return None
    _, speaker, role = best
    return speaker, _role_kind(role) == "official"


def _better(a: tuple[int, str, str] | None, b: tuple[int, str, str]) -> tuple[int, str, str]:
    return b if a is None or b[0] < a[0] else a


def _role_kind(role: str) -> str | None:
    low = role.lower()
    if _PRIVATE_CONTEXT.search(low):
        return "other"
    for r in sorted(_OFFICIAL_ROLES, key=len, reverse=True):
        if re.search(rf"\b{re.escape(r)}\b", low):
            return "official"
    for r in _OTHER_ROLES:
        if re.search(rf"\b{re.escape(r)}\b", low):
            return "other"
    return None
