"""Synthetic tables shaped like the five ADRS datasets (spec 4.3); no real data is embedded.

Rows are grouped by entity (a movie, a beer, a post, a product; one per row for PDMX), entities
in id order with Zipf popularity. Entity columns are drawn once per entity; row columns once per
row. One `random.Random(seed)` drives a whole table.
"""

from __future__ import annotations

import random
import string
from itertools import accumulate

N_ROWS = 2000
PROFILES = ("beer_like", "movies_like", "bird_like", "pdmx_like", "products_like")

WORDS = tuple("""
able about acid amber angle apple arch autumn badge baker barley basin beach bell berry birch
bitter black blade bloom blue board bold bone border bottle brass bread brick bridge bright
brook brown brush cabin candle canyon carbon cargo castle cedar chalk chapel charm cherry cider
cinder citrus civic clay cliff clock cloud clover coast cobalt comet copper coral cotton crane
creek crest crisp crown crystal cycle dancer dawn delta desert dew dream drift dune dust eagle
early echo edge elder ember empire falcon feather fern field fire flint flora fog forest fox
frost garden gate giant ginger glacier glass gold grain granite grape grass gravel green grove
harbor harvest hazel heart heron hill hollow honey horizon hound iron island ivory jade jasmine
jet jungle juniper kettle king lace lake lantern lark laurel lava lemon light lily lime linen
lion lotus lunar maple marble marsh meadow mellow mesa midnight mill mint mist moon moss
mountain nectar needle night noble north nut oak ocean olive onyx orbit orchard otter owl
paper peak pearl pepper pine plain plum pond poppy prairie prism quarry quartz quiet rain raven
reed ridge river robin rock rose ruby rust saddle sage salt sand scarlet shadow shore silver
sky slate smoke snow solar spark spice spring spruce star steel stone storm stream summit sun
swan thistle thunder tide timber topaz tower trail tulip twilight valley velvet vine violet
walnut water wave wheat willow wind winter wolf wood yarrow zephyr
""".split())
ALNUM = string.ascii_uppercase + string.digits


def zipf_cum(k: int, exponent: float) -> list[float]:
    """Cumulative Zipf weights 1/i**exponent for ranks 1..k (for rng.choices)."""
    return list(accumulate(1.0 / (i + 1) ** exponent for i in range(k)))


def allocate(n: int, weights) -> list[int]:
    """Integer counts summing to n, proportional to weights (largest remainder; ties to lower index)."""
    total = sum(weights)
    exact = [n * w / total for w in weights]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts


def text(rng: random.Random, lo: int, hi: int) -> str:
    """Words from the fixed list, capitalised, cut to a length drawn in [lo, hi]."""
    length = rng.randint(lo, hi)
    out = " ".join(rng.choices(WORDS, k=length // 5 + 2))
    while len(out) < length:
        out += " " + " ".join(rng.choices(WORDS, k=length // 20 + 2))
    out = out[:length].rstrip()
    return out[0].upper() + out[1:]


def code(rng: random.Random, alphabet: str, k: int) -> str:
    """k characters drawn from alphabet."""
    return "".join(rng.choices(alphabet, k=k))


def digits(rng: random.Random, lo: int, hi: int) -> str:
    """A number with a digit count drawn in [lo, hi] (no leading zero)."""
    k = rng.randint(lo, hi)
    return str(rng.randint(10 ** (k - 1) if k > 1 else 0, 10 ** k - 1))


def unique(rng: random.Random, count: int, draw) -> list[str]:
    """`count` distinct values of draw(rng)."""
    seen, out = set(), []
    while len(out) < count:
        value = draw(rng)
        if value not in seen:
            seen.add(value)
            out.append(value)
    return out


def zipf_column(rng: random.Random, vocab: list[str], exponent: float, n: int) -> list[str]:
    return rng.choices(vocab, cum_weights=zipf_cum(len(vocab), exponent), k=n)


def flag(rng: random.Random, p: float, n: int) -> list[str]:
    return ["True" if rng.random() < p else "False" for _ in range(n)]


def score(rng: random.Random, top: int, n: int, p: float = 0.65) -> list[str]:
    """`k/top` scores, k = 1 + Binomial(top - 1, p)."""
    pmf = [1.0]
    for _ in range(top - 1):  # the binomial pmf by repeated convolution with (1-p, p)
        pmf = [a * (1 - p) + b * p for a, b in zip(pmf + [0.0], [0.0] + pmf)]
    return [f"{k}/{top}" for k in rng.choices(range(1, top + 1), weights=pmf, k=n)]


def user_name(rng: random.Random) -> str:
    name = rng.choice(WORDS) + rng.choice(("", "_", "")) + rng.choice(WORDS)
    return name + (digits(rng, 1, 3) if rng.random() < 0.5 else "")


def entity_rows(n: int, entities: int, exponent: float) -> list[int]:
    """The entity of each row: grouped, in id order, counts by Zipf popularity."""
    counts = allocate(n, [1.0 / (i + 1) ** exponent for i in range(entities)])
    return [e for e, c in enumerate(counts) for _ in range(c)]


def beer_like(rng: random.Random, n: int):
    owner = entity_rows(n, 100, 1.0)
    styles = unique(rng, 78, lambda r: text(r, 8, 24))
    names = unique(rng, 100, lambda r: text(r, 10, 40))
    ids = unique(rng, 100, lambda r: digits(r, 4, 5))
    style = [rng.choice(styles) for _ in range(100)]
    profile = zipf_column(rng, unique(rng, 1500, user_name), 0.8, n)
    times = [str(t) for t in rng.sample(range(1_000_000_000, 10_000_000_000), n)]
    overall, taste = score(rng, 20, n), score(rng, 10, n)
    palate, appearance = score(rng, 5, n), score(rng, 5, n)
    header = ["review/profileName", "review/time", "review/overall", "review/taste",
              "review/palate", "review/appearance", "beer/name", "beer/style", "beer/beerId"]
    rows = [[profile[i], times[i], overall[i], taste[i], palate[i], appearance[i],
             names[e], style[e], ids[e]] for i, e in enumerate(owner)]
    return header, rows


def movies_like(rng: random.Random, n: int):
    owner = entity_rows(n, 150, 1.1)
    titles = unique(rng, 150, lambda r: text(r, 10, 40))
    infos = [text(rng, 200, 600) for _ in range(150)]
    links = ["m/" + "_".join(t.lower().split()) for t in titles]
    review_type = ["Fresh" if rng.random() < 0.6 else "Rotten" for _ in range(n)]
    top = flag(rng, 0.3, n)
    publisher = zipf_column(rng, unique(rng, 300, lambda r: text(r, 5, 25)), 1.1, n)
    critic = zipf_column(rng, unique(rng, 800, lambda r: text(r, 8, 20).title()), 0.8, n)
    dates = unique(rng, 500, lambda r: f"{r.randint(2000, 2020)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}")
    date = [rng.choice(dates) for _ in range(n)]
    grades = [f"{k}/5" for k in range(1, 6)] + [f"{k}/4" for k in range(1, 5)] + \
             [f"{k}/10" for k in (3, 5, 6, 7, 8, 9)] + ["A", "B+", "B", "C", "D"]
    review_score = [rng.choice(grades) for _ in range(n)]
    content = unique(rng, n, lambda r: text(r, 60, 200))
    header = ["movieinfo", "movietitle", "rottentomatoeslink", "criticname", "topcritic",
              "publishername", "reviewtype", "reviewscore", "reviewdate", "reviewcontent"]
    rows = [[infos[e], titles[e], links[e], critic[i], top[i], publisher[i], review_type[i],
             review_score[i], date[i], content[i]] for i, e in enumerate(owner)]
    return header, rows


def bird_like(rng: random.Random, n: int):
    owner = entity_rows(n, 300, 1.0)
    post_ids = unique(rng, 300, lambda r: digits(r, 1, 6))
    bodies = [text(rng, 100, 800) for _ in range(300)]
    comment_ids = [str(c) for c in rng.sample(range(1, 1_000_000), n)]
    comment = unique(rng, n, lambda r: text(r, 20, 300))
    users = zipf_column(rng, unique(rng, 1000, lambda r: digits(r, 1, 6)), 1.0, n)
    scores = [str(rng.randrange(10)) for _ in range(n)]
    created = unique(rng, n, lambda r: f"20{r.randint(10, 14)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d} "
                                       f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}.0")
    header = ["CommentId", "PostId", "Score", "Text", "CreationDate", "UserId", "Body"]
    rows = [[comment_ids[i], post_ids[e], scores[i], comment[i], created[i], users[i], bodies[e]]
            for i, e in enumerate(owner)]
    return header, rows


def pdmx_like(rng: random.Random, n: int):
    def file_path(r, folder, suffix):
        stem_len = r.randint(30, 50) - len(folder) - len(suffix)
        return folder + code(r, ALNUM.lower(), stem_len) + suffix

    paths = unique(rng, n, lambda r: file_path(r, "./data/", ".mxl"))
    metadata = unique(rng, n, lambda r: file_path(r, "./metadata/", ".json"))
    flags = [flag(rng, p, n) for p in (0.9, 0.1, 0.3, 0.05, 0.2, 0.5)]
    composer = zipf_column(rng, unique(rng, 400, lambda r: text(r, 8, 24).title()), 1.2, n)
    genres = unique(rng, 30, lambda r: r.choice(WORDS))
    genre = [rng.choice(genres) for _ in range(n)]
    licenses = ["Public Domain", "CC0", "CC-BY-4.0", "CC-BY-SA-4.0", "CC-BY-NC-4.0"]
    license_ = [rng.choice(licenses) for _ in range(n)]
    ratings = [f"{k / 10:.1f}" for k in range(50)]
    rating = [rng.choice(ratings) for _ in range(n)]
    title = [text(rng, 10, 40) for _ in range(n)]
    header = ["path", "metadata", "title", "composer", "genre", "license", "rating",
              "hasmetadata", "isofficial", "isuserpublisher", "isdraft", "hasannotations",
              "subsetall"]
    rows = [[paths[i], metadata[i], title[i], composer[i], genre[i], license_[i], rating[i]]
            + [f[i] for f in flags] for i in range(n)]
    return header, rows


def products_like(rng: random.Random, n: int):
    owner = entity_rows(n, 200, 1.0)
    product_titles = unique(rng, 200, lambda r: text(r, 30, 150))
    asins = unique(rng, 200, lambda r: "B0" + code(r, ALNUM, 8))
    rating = rng.choices(["1.0", "2.0", "3.0", "4.0", "5.0"], weights=[8, 6, 10, 20, 56], k=n)
    title = [text(rng, 10, 60) for _ in range(n)]
    review = unique(rng, n, lambda r: text(r, 50, 400))
    users = zipf_column(rng, unique(rng, 1500, lambda r: "A" + code(r, ALNUM, 27)),
                        0.7, n)
    stamps = [str(t) for t in rng.sample(range(1_000_000_000_000, 1_700_000_000_000), n)]
    votes = zipf_column(rng, [str(k) for k in range(20)], 1.5, n)
    verified = flag(rng, 0.9, n)
    header = ["rating", "title", "text", "parent_asin", "product_title", "user_id", "timestamp",
              "helpful_vote", "verified_purchase"]
    rows = [[rating[i], title[i], review[i], asins[e], product_titles[e], users[i], stamps[i],
             votes[i], verified[i]] for i, e in enumerate(owner)]
    return header, rows


def generate(profile: str, seed: int, n: int = N_ROWS) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of one synthetic table."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    return globals()[profile](random.Random(seed), n)
