"""Near-duplicate detection: MinHash signatures, LSH band keys, story grouping.

The stories below are original wire-style texts written for these tests (~250
words, seven short paragraphs, as agency copy is usually laid out).  A syndicated
copy gets a new headline, a byline, a dateline, a "Con información de EFE" credit
line, a "Te puede interesar" teaser and loses one paragraph; with 5-word shingles
that leaves an exact Jaccard of roughly 0.70-0.82 with the original (each dropped
paragraph costs its share of shingles and every edit point up to four more).
Different stories on the same topic share essentially no 5-shingles.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from monitor import dedup
from monitor.dedup import (
    DEFAULT_BANDS,
    DUPLICATE_JACCARD,
    MERSENNE_61,
    MinHasher,
    StoryIndex,
    content_fingerprint,
    is_empty_signature,
    is_near_duplicate,
    jaccard,
    normalise,
    shingles,
)

ROOT = Path(__file__).resolve().parents[1]

AGUA_TITLE = "Presas de Nuevo León operan a poco más de un tercio de su capacidad"
AGUA = [
    "Las tres principales presas que abastecen al área metropolitana de Monterrey almacenan en conjunto apenas "
    "el 38 por ciento de su capacidad, informó este martes la Comisión Nacional del Agua.",
    "El organismo advirtió que el periodo de lluvias llegó con retraso y que las reservas podrían no alcanzar "
    "para cubrir la demanda del verano si el consumo se mantiene en los niveles actuales.",
    "De acuerdo con el reporte semanal, la presa El Cuchillo se encuentra al 41 por ciento, mientras que Cerro "
    "Prieto apenas rebasa el 12 por ciento y La Boca registra niveles cercanos al 30 por ciento.",
    "Servicios de Agua y Drenaje anunció que a partir de la próxima semana reducirá la presión en la red durante "
    "la noche en once municipios, una medida que permitirá ahorrar cerca de dos mil litros por segundo.",
    "«No queremos volver a los cortes programados del año pasado, por eso pedimos a las familias que cuiden cada "
    "gota», declaró el director de la paraestatal en una conferencia de prensa.",
    "Vecinos de colonias ubicadas en las partes altas de Guadalupe y Escobedo denunciaron que desde hace quince "
    "días el líquido llega solo unas horas por la mañana y que han tenido que pagar pipas particulares a precios "
    "que consideran abusivos.",
    "El gobierno estatal reiteró que el acueducto que conectará la presa El Cuchillo con la zona metropolitana "
    "entrará en operación antes de que termine el año y pidió a la población reportar fugas y evitar el lavado "
    "de autos con manguera.",
]

DEFENSORA_TITLE = "Defensora zapoteca denuncia amenazas de muerte tras oponerse a una mina en Oaxaca"
DEFENSORA = [
    "Una defensora del territorio zapoteca denunció ante la Fiscalía General del Estado de Oaxaca que ha recibido "
    "amenazas de muerte por teléfono y mensajes en redes sociales.",
    "Las intimidaciones comenzaron, según su testimonio, poco después de que su comunidad presentara un amparo "
    "contra la ampliación de una concesión minera en la región de los Valles Centrales.",
    "La activista integra un colectivo que desde hace una década documenta la contaminación de pozos y arroyos, "
    "y explicó que los mensajes arreciaron tras una asamblea en la que los comuneros rechazaron por unanimidad "
    "cualquier nueva exploración.",
    "Organizaciones civiles pidieron al Mecanismo de Protección para Personas Defensoras de Derechos Humanos y "
    "Periodistas que le otorgue medidas cautelares de inmediato, entre ellas un botón de pánico y rondines "
    "policiales.",
    "«Nos quieren callar porque defendemos el agua de nuestros hijos, pero no vamos a dejar la lucha», dijo la "
    "defensora en un video difundido por el colectivo.",
    "En un comunicado, la empresa minera negó cualquier relación con las amenazas y aseguró que respeta el "
    "derecho de las comunidades a manifestarse, aunque insistió en que su proyecto cuenta con todos los permisos "
    "ambientales vigentes.",
    "La Oficina en México del Alto Comisionado de las Naciones Unidas para los Derechos Humanos recordó que el "
    "país es uno de los más peligrosos del mundo para quienes defienden la tierra y exhortó a las autoridades a "
    "investigar con la debida diligencia.",
]

REMESAS_TITLE = "Remesas alcanzan cifra récord en el primer semestre"
REMESAS = [
    "Las remesas que enviaron los mexicanos que trabajan en el extranjero sumaron un monto récord durante el "
    "primer semestre del año, según datos publicados este lunes por el banco central.",
    "El crecimiento fue impulsado por la fortaleza del empleo en el sector de la construcción en Estados Unidos, "
    "donde labora una parte importante de los trabajadores migrantes de origen mexicano.",
    "Los envíos promediaron poco más de 390 dólares por operación, una cifra ligeramente superior a la del mismo "
    "periodo del año anterior, mientras que las transferencias electrónicas siguieron desplazando a las órdenes "
    "de pago en efectivo.",
    "Michoacán, Guanajuato y Jalisco se mantuvieron como los estados que más dinero recibieron, aunque analistas "
    "destacaron el aumento sostenido de los flujos hacia Chiapas y Guerrero.",
    "En esas entidades las remesas ya representan una proporción considerable del consumo de los hogares, sobre "
    "todo en municipios rurales con pocas fuentes de empleo formal.",
    "Economistas de instituciones financieras privadas advirtieron que la apreciación del peso frente al dólar "
    "reduce el poder de compra de las familias receptoras, pues cada dólar enviado se traduce en menos pesos que "
    "hace dos años.",
    "Para el segundo semestre, los especialistas prevén una moderación en el ritmo de crecimiento debido a la "
    "desaceleración del mercado laboral estadounidense, aunque descartan una caída abrupta de los ingresos.",
]

# Same topic as AGUA (Monterrey's water crisis), different reporting and wording.
AGUA_OTRA_TITLE = "Monterrey enfrenta otro verano de escasez: colonias sin agua y presas a la baja"
AGUA_OTRA = [
    "Por segundo año consecutivo, miles de familias del área metropolitana de Monterrey comienzan el verano con "
    "los tinacos vacíos.",
    "La falta de lluvias en la cuenca del río San Juan ha dejado a las presas de la región muy por debajo de su "
    "nivel habitual para esta temporada, según especialistas.",
    "En una colonia del municipio de Escobedo, los habitantes hacen fila desde las cinco de la mañana para llenar "
    "cubetas en una toma comunitaria.",
    "«Aquí no ha salido agua de la llave en una semana», relató una comerciante que vende comida en la esquina.",
    "Investigadores de la Universidad Autónoma de Nuevo León atribuyen la crisis a una combinación de sequía "
    "prolongada, crecimiento urbano desordenado y pérdidas en la red de distribución, que estiman en casi un "
    "tercio del agua que se bombea cada día.",
    "La dependencia encargada del suministro aseguró que trabaja en la reparación de fugas y en la perforación de "
    "nuevos pozos, pero reconoció que el abastecimiento normal no se restablecerá mientras no lleguen las lluvias "
    "de temporada.",
    "Mientras tanto, industrias instaladas en la zona han firmado convenios para utilizar agua tratada en sus "
    "procesos, lo que liberará volúmenes de agua potable para el consumo doméstico.",
]

STORIES = {"agua": (AGUA_TITLE, AGUA), "defensora": (DEFENSORA_TITLE, DEFENSORA), "remesas": (REMESAS_TITLE, REMESAS)}


def article(title: str, paragraphs: list[str]) -> str:
    return title + "\n\n" + "\n\n".join(paragraphs)


def syndicated_copy(paragraphs: list[str], drop: int, headline: str = "Lo que debes saber sobre esta nota") -> str:
    """What a republishing outlet does: new headline, byline, dateline, one paragraph less, credit line."""
    kept = [p for i, p in enumerate(paragraphs) if i != drop]
    kept[0] = "CIUDAD DE MÉXICO, 12 de agosto (EFE).— " + kept[0]
    return headline + "\n\nPor Redacción | 12/08/2025 09:41\n\n" + "\n\n".join(kept) + "\n\nCon información de EFE"


def exact_jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb)


@pytest.fixture(scope="module")
def hasher() -> MinHasher:
    return MinHasher()


def reference_signature(hasher: MinHasher, text: str) -> list[int]:
    """Slow, obviously-correct MinHash in Python ints."""
    p = MERSENNE_61
    sh = shingles(text, hasher.k)
    return [min((a * (x % p) + b) % p for x in sh) for a, b in hasher.permutations]


# ------------------------------------------------------------------------ text level


def test_stories_are_wire_sized() -> None:
    for title, paragraphs in [*STORIES.values(), (AGUA_OTRA_TITLE, AGUA_OTRA)]:
        assert 200 <= len(article(title, paragraphs).split()) <= 290


def test_normalise() -> None:
    assert normalise("  Información:   ¡MÉXICO, 2025!  Niño—año  ") == "informacion mexico nino ano"
    assert normalise("El 12 de agosto de 2025, a las 09:41") == "el de agosto de a las"
    assert normalise("COVID19 y el G20", keep_numbers=False) == "covid19 y el g20"
    assert normalise("El 12 de agosto", keep_numbers=True) == "el 12 de agosto"
    assert normalise("snake_case…“comillas”") == "snake case comillas"
    assert normalise("") == "" and normalise(" ¿¡ -- 123 !? ") == ""


def test_shingles() -> None:
    words = "uno dos tres cuatro cinco seis siete".split()
    sh = shingles(" ".join(words))
    assert len(sh) == len(words) - 5 + 1
    assert all(isinstance(h, int) and 0 <= h < 2**64 for h in sh)
    assert shingles("Hola, mundo") == shingles("hola mundo") and len(shingles("hola mundo")) == 1  # < k words
    assert shingles("") == set() and shingles("  ,.; 42 ") == set()
    assert shingles("a b c", k=1) == shingles("c b a", k=1)
    assert shingles(article(AGUA_TITLE, AGUA)) == shingles(article(AGUA_TITLE, AGUA).upper())
    with pytest.raises(ValueError):
        shingles("texto", k=0)


def test_content_fingerprint() -> None:
    text = article(AGUA_TITLE, AGUA)
    variant = "  " + text.upper().replace(" ", "\n  ").replace("ó", "o") + " "
    assert content_fingerprint(text) == content_fingerprint(variant)
    assert re.fullmatch(r"[0-9a-f]{64}", content_fingerprint(text))
    assert content_fingerprint(text) != content_fingerprint(text.replace("38 por ciento", "39 por ciento"))
    assert content_fingerprint(text) != content_fingerprint(text + " Fin.")


# ----------------------------------------------------------------------- signatures


def test_signature_matches_pure_python_reference(hasher: MinHasher) -> None:
    texts = [article(t, p) for t, p in STORIES.values()] + ["Breve.", "uno dos tres cuatro cinco seis"]
    for text in texts:
        sig = hasher.signature(text)
        assert sig.dtype == np.uint64 and sig.shape == (128,)
        assert sig.tolist() == reference_signature(hasher, text)


def test_modular_arithmetic_at_the_edges() -> None:
    p = MERSENNE_61
    a = [1, p - 1, p - 2, 2**32, 2**32 - 1, 2**60, 2**61 - 2**32, 123456789012345678]
    b = [0, p - 1, p - 1, 5, 2**32, p - 2, 0, 987654321]
    x = [0, 1, p - 1, p - 2, 2**32 - 1, 2**32, 2**61 - 2**29, 2**58 + 17]
    arr_a = np.array(a, dtype=np.uint64)[:, None]
    got = dedup._affine_mod61(arr_a & dedup._M32, arr_a >> dedup._S32,
                              np.array(b, dtype=np.uint64)[:, None], np.array(x, dtype=np.uint64)[None, :])
    want = [[(ai * xj + bi) % p for xj in x] for ai, bi in zip(a, b)]
    assert got.tolist() == want


def test_permutations_are_deterministic_and_distinct() -> None:
    one, again, other = MinHasher(), MinHasher(), MinHasher(seed=2)
    assert one.permutations == again.permutations != other.permutations
    assert len(set(one.permutations)) == 128
    assert all(1 <= a < MERSENNE_61 and 0 <= b < MERSENNE_61 for a, b in one.permutations)
    assert one.params == "minhash-v1/k5/p128/s1"


def test_bytes_roundtrip(hasher: MinHasher) -> None:
    sig = hasher.signature(article(REMESAS_TITLE, REMESAS))
    blob = hasher.to_bytes(sig)
    assert isinstance(blob, bytes) and len(blob) == 8 * 128
    assert int.from_bytes(blob[:8], "little") == int(sig[0])  # fixed little-endian layout
    back = hasher.from_bytes(blob)
    assert back.dtype == np.uint64 and np.array_equal(back, sig)
    back[0] = 0  # a writable copy, not a view of the blob
    assert jaccard(blob, sig) == 1.0 and is_near_duplicate(blob, hasher.to_bytes(sig))
    with pytest.raises(ValueError):
        hasher.from_bytes(blob[:-8])
    with pytest.raises(ValueError):
        hasher.from_bytes(blob + b"\x00")


def test_band_keys(hasher: MinHasher) -> None:
    sig = hasher.signature(article(DEFENSORA_TITLE, DEFENSORA))
    keys = hasher.band_keys(sig)
    assert len(keys) == DEFAULT_BANDS == 32
    assert all(re.fullmatch(r"\d\d:[0-9a-f]{10}", k) for k in keys)
    assert [k[:2] for k in keys] == [f"{i:02d}" for i in range(32)]
    assert keys == hasher.band_keys(hasher.to_bytes(sig))
    assert len(hasher.band_keys(sig, bands=16)) == 16
    changed = sig.copy()
    changed[5] += np.uint64(1)  # row 5 is in band 1 (4 rows per band)
    diff = [i for i, (x, y) in enumerate(zip(keys, hasher.band_keys(changed))) if x != y]
    assert diff == [1]
    with pytest.raises(ValueError):
        hasher.band_keys(sig, bands=0)


def test_s_curve_numbers_in_docstring() -> None:
    documented = {0.3: "0.229", 0.5: "0.873", 0.55: "0.954", 0.6: "0.988", 0.7: "0.9998", 0.8: "0.99999995"}
    for s, text in documented.items():
        value = dedup.s_curve(s)
        assert abs(value - float(text)) < 10 ** -(len(text) - 2) / 2 + 1e-12, (s, value)
        assert f"s = {s}".ljust(8) + " ->  " + text in dedup.__doc__
    assert dedup.s_curve(0.8) > 0.99 and dedup.s_curve(0.3) < 0.25  # the brief's requirement
    assert dedup.s_curve(DUPLICATE_JACCARD) > 0.95


def test_empty_text(hasher: MinHasher) -> None:
    for text in ("", "   ", "123 456", "¡¿...?!"):
        sig = hasher.signature(text)
        assert is_empty_signature(sig) and sig.shape == (128,)
        assert hasher.band_keys(sig) == []
        assert jaccard(sig, sig) == 0.0 and not is_near_duplicate(sig, hasher.signature(""))
        assert hasher.from_bytes(hasher.to_bytes(sig)).tolist() == sig.tolist()
    assert jaccard(hasher.signature(""), hasher.signature(article(AGUA_TITLE, AGUA))) == 0.0
    assert not is_empty_signature(hasher.signature("Breve."))


def test_mismatched_lengths_rejected(hasher: MinHasher) -> None:
    with pytest.raises(ValueError):
        jaccard(hasher.signature("uno dos"), MinHasher(num_perm=64).signature("uno dos"))
    with pytest.raises(ValueError):
        hasher.to_bytes(np.zeros(64, dtype=np.uint64))


# ---------------------------------------------------------------- duplicates or not


@pytest.mark.parametrize("name", sorted(STORIES))
def test_syndicated_copy_is_near_duplicate(hasher: MinHasher, name: str) -> None:
    title, paragraphs = STORIES[name]
    original = article(title, paragraphs)
    sig = hasher.signature(original)
    for drop in range(len(paragraphs)):
        copy = syndicated_copy(paragraphs, drop)
        exact = exact_jaccard(original, copy)
        assert 0.68 <= exact <= 0.85, (drop, exact)  # what these edits actually cost (module docstring)
        copy_sig = hasher.signature(copy)
        assert is_near_duplicate(sig, copy_sig), (drop, exact, jaccard(sig, copy_sig))
        assert set(hasher.band_keys(sig)) & set(hasher.band_keys(copy_sig))  # found by the index
    # A verbatim copy with only headline and credit line changed is nearly identical.
    light = ("Otro titular\n\n" + "\n\n".join(paragraphs) + "\n\nCon información de EFE"
             + "\n\nTe puede interesar: Así amaneció el tráfico en la capital")
    assert jaccard(sig, hasher.signature(light)) >= 0.85


def test_same_topic_different_story_is_not_duplicate(hasher: MinHasher) -> None:
    a, b = article(AGUA_TITLE, AGUA), article(AGUA_OTRA_TITLE, AGUA_OTRA)
    assert exact_jaccard(a, b) < 0.05
    sa, sb = hasher.signature(a), hasher.signature(b)
    assert jaccard(sa, sb) < 0.1 and not is_near_duplicate(sa, sb)
    assert not set(hasher.band_keys(sa)) & set(hasher.band_keys(sb))


def test_estimate_close_to_exact(hasher: MinHasher) -> None:
    agua, remesas = article(AGUA_TITLE, AGUA), article(REMESAS_TITLE, REMESAS)
    half = article(AGUA_TITLE, AGUA[:4] + REMESAS[3:])
    pairs = [
        (agua, syndicated_copy(AGUA, 2)),
        (remesas, syndicated_copy(REMESAS, 6)),
        (agua, half),
        (remesas, half),
        (agua, article(AGUA_TITLE, AGUA[:5])),
        (agua, remesas),
    ]
    for a, b in pairs:
        exact = exact_jaccard(a, b)
        est = jaccard(hasher.signature(a), hasher.signature(b))
        assert abs(est - exact) < 0.1, (exact, est)
    assert 0.25 < exact_jaccard(agua, half) < 0.75  # the pairs span a range, not just 0 and 1


def test_signatures_identical_across_processes(hasher: MinHasher) -> None:
    text = article(DEFENSORA_TITLE, DEFENSORA)
    code = ("import sys; from monitor.dedup import MinHasher; m = MinHasher(); s = m.signature(sys.stdin.read()); "
            "print(m.to_bytes(s).hex()); print(','.join(m.band_keys(s)))")
    here = hasher.to_bytes(hasher.signature(text)).hex() + "\n" + ",".join(hasher.band_keys(hasher.signature(text)))
    for seed in ("0", "12345", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", code], input=text, capture_output=True, text=True,
                             encoding="utf-8", env=env, cwd=ROOT, check=True, timeout=120).stdout
        assert out.strip() == here


# ---------------------------------------------------------------------- story index


def test_story_index_groups_copies(hasher: MinHasher) -> None:
    index = StoryIndex(hasher)
    copy_a = hasher.signature(syndicated_copy(AGUA, 3, headline="Crisis hídrica: advierten por bajo nivel de presas"))
    original = hasher.signature(article(AGUA_TITLE, AGUA))
    copy_b = hasher.signature(syndicated_copy(AGUA, 6, headline="Monterrey, con presas a la baja"))
    other_1 = hasher.signature(article(REMESAS_TITLE, REMESAS))
    other_2 = hasher.signature(article(AGUA_OTRA_TITLE, AGUA_OTRA))

    # The copy arrived first: the story takes its id, and later members join it.
    assert index.add("copy-a", copy_a) == "copy-a"
    assert index.add("remesas", other_1) == "remesas"
    assert index.add("original", original) == "copy-a"
    assert index.add("agua-otra", other_2) == "agua-otra"
    assert index.add("copy-b", copy_b) == "copy-a"
    assert index.stories() == {"copy-a": ["copy-a", "original", "copy-b"], "remesas": ["remesas"],
                               "agua-otra": ["agua-otra"]}
    assert index.add("original", original) == "copy-a" and len(index) == 5  # re-adding is a no-op
    assert index.matches(hasher.to_bytes(copy_b)) == ["copy-a", "original", "copy-b"]
    assert "remesas" not in index.candidates(original)
    empty = hasher.signature("")
    assert index.add("vacio-1", empty) == "vacio-1" and index.add("vacio-2", empty) == "vacio-2"
    assert index.story_of("copy-b") == "copy-a"


def test_story_index_joins_earliest_story_without_merging(hasher: MinHasher) -> None:
    """Two existing stories that a newcomer resembles stay separate; it joins the older one."""
    index = StoryIndex(hasher, threshold=0.4)
    first = article(AGUA_TITLE, AGUA)
    second = article(REMESAS_TITLE, REMESAS)
    both = article(AGUA_TITLE, AGUA + REMESAS)  # one story pasted after the other: ~half of it is each
    assert index.add("first", hasher.signature(first)) == "first"
    assert index.add("second", hasher.signature(second)) == "second"
    assert index.matches(hasher.signature(both)) == ["first", "second"]
    assert index.add("both", hasher.signature(both)) == "first"
    assert index.story_of("second") == "second"
