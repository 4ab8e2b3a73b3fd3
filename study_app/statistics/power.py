"""Power and sample size for Obuchowski-Rockette (OR) MRMC reader studies (pure maths).

Hillis, Obuchowski & Berbaum (2011) "Power estimation for multireader ROC methods: an updated and unified
approach", Acad Radiol 18:129-142 (HOB 2011): take a pilot's OR variance components, scale the error
(co)variances to the new number of cases by (pilot cases / new cases), which assumes the same case mix (ratio
of positives), and read power off the noncentral F distribution with Hillis' (2007) denominator df. Negative
variance components are truncated at 0 as HOB 2011 do, and so are Cov2 and Cov2 - Cov3 (Hillis 2007).

Questions: an arm's AUC against chance (the single-treatment OR test of Hillis 2007), the difference between
two arms read by the same readers on the same cases (HOB 2011, random readers and random cases), and
equivalence with chance (two one-sided tests). Designs: fully crossed, or split-plot (Obuchowski 2009, Acad
Radiol 16:209-217): readers and cases split into G equal groups, each group's readers reading only its cases.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import stats

from urcdm.errors import UserError

TESTS = ("versus-chance", "difference", "equivalence")
DESIGNS = ("crossed", "split-plot")
MAX_CASES = 5000  # the sample-size search stops here: beyond it a reader study is not the right tool
DEFAULT_READERS = tuple(range(3, 21))
DEFAULT_CASES = (50, 100, 200, 400)
COMPONENT_NAMES = ("var_r", "var_tr", "var_error", "cov1", "cov2", "cov3")


@dataclass(frozen=True)
class ORComponents:
    """A pilot's OR components; the error (co)variances are those of an AUC estimated on ``cases`` cases.

    var_r, var_tr: reader and arm-by-reader variances (var_tr None for a single-arm pilot). var_error, cov1 (same
    reader, other arm), cov2 (other reader, same arm), cov3 (other reader and arm): covariances of the AUC
    estimates over case samples; cov1 and cov3 are None for one arm. Kept as estimated (possibly negative):
    the power formulas do the truncation. positive_fraction only decides how few cases a group may have.
    """

    var_r: float | None
    var_tr: float | None
    var_error: float
    cov1: float | None
    cov2: float | None
    cov3: float | None
    cases: int
    positive_fraction: float = 0.5

    def __post_init__(self):
        bad = [n for n in COMPONENT_NAMES if getattr(self, n) is not None and not math.isfinite(getattr(self, n))]
        if bad:
            raise UserError(f"component(s) {', '.join(bad)} must be finite numbers")
        if not self.var_error > 0:
            raise UserError(f"var_error must be > 0 (one reader's AUC variance over cases), got {self.var_error}")
        # Two AUC estimates of equal variance covary by at most that variance (Cauchy-Schwarz), as
        # estimated components do too: a larger one is a typing slip, not a pilot.
        over = [n for n in ("cov1", "cov2", "cov3") if getattr(self, n) is not None
                and abs(getattr(self, n)) > self.var_error * (1 + 1e-9)]
        if over:
            raise UserError(f"{over[0]} = {getattr(self, over[0]):g} exceeds var_error = {self.var_error:g}: a "
                            f"covariance of two AUC estimates cannot exceed their variance")
        if not self.cases >= 4:
            raise UserError(f"the components must come from at least 4 pilot cases, got {self.cases}")
        if not 0 < self.positive_fraction < 1:
            raise UserError(f"the fraction of positive cases must be in (0, 1), got {self.positive_fraction}")


def components_from_result(result: dict, arm: str | None = None) -> ORComponents:
    """ORComponents from a ``study_app.statistics.mrmc.analyse`` result.

    arm None: the whole pilot's components (several arms: var_r, var_tr and Cov1..Cov3 averaged over the arms as
    the OR analysis does; one arm: var_r, var_error, cov2). arm named in a multi-arm pilot: that arm's own
    single-treatment components, var_r = MS_R(arm) - Var(arm) + Cov2(arm) (Hillis 2007), which are the numbers
    ``analyse`` gives for that arm alone.
    """
    if len(result["readers"]) < 2:
        raise UserError("a pilot with one reader has no reader variance; power for random readers needs a pilot "
                        "read by 2 or more readers")
    fraction = result["positives"] / result["cases"]
    if arm is None or result["arms"] == [arm]:
        covs, comps = result["covariances"], result["variance_components"]
        return ORComponents(comps["var_r"], comps["var_tr"], covs["var_error"], covs["cov1"], covs["cov2"],
                            covs["cov3"], result["cases"], fraction)
    if arm not in result["arms"]:
        raise UserError(f"arm {arm!r} is not in the pilot (arms: {', '.join(map(repr, result['arms']))})")
    own, ms_r = result["arm_covariances"][arm], result["mean_squares"]["ms_r_arm"][arm]
    return ORComponents(ms_r - own["var_error"] + own["cov2"], None, own["var_error"], None, own["cov2"], None,
                        result["cases"], fraction)


def _pos(value: float | None) -> float:
    return max(value or 0.0, 0.0)


def _need(components: ORComponents, names: Sequence[str], what: str) -> None:
    missing = [n for n in names if getattr(components, n) is None]
    if missing:
        raise UserError(f"{what} needs the component(s) {', '.join(missing)}"
                        + (" (a pilot with two arms)" if {"var_tr", "cov1", "cov3"} & set(missing) else ""))


def _ddf(denominator: np.ndarray, mean_square: np.ndarray, df: float) -> np.ndarray:
    """Hillis (2007) ddf: Satterthwaite for denominator = E[MS] + constant; infinite when E[MS] is 0."""
    if not np.all(denominator > 0):
        raise UserError("the components give an AUC variance of 0; power cannot be computed")
    with np.errstate(divide="ignore"):
        return np.where(mean_square > 0, denominator ** 2 / (np.maximum(mean_square, 0.0) ** 2 / df), np.inf)


def _crossed_single(c: ORComponents, readers: float, cases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Var(reader-averaged AUC of one arm) and ddf, single-treatment OR (Hillis 2007)."""
    _need(c, ("var_r", "cov2"), "the test against chance")
    scale = c.cases / cases
    # In a multi-arm pilot one arm's readers differ by R and by T*R, so both make the single-arm reader variance.
    reader_var = _pos(c.var_r) + _pos(c.var_tr)
    error, cov2 = scale * c.var_error, scale * _pos(c.cov2)
    denominator = reader_var + error + (readers - 1) * cov2
    return denominator / readers, _ddf(denominator, reader_var + error - cov2, readers - 1)


def _crossed_difference(c: ORComponents, readers: float, cases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Var(difference of two reader-averaged AUCs) and ddf (HOB 2011, random readers and cases)."""
    _need(c, ("var_tr", "cov1", "cov2", "cov3"), "the difference test")
    scale = c.cases / cases
    cov23 = scale * max(c.cov2 - c.cov3, 0.0)
    common = _pos(c.var_tr) + scale * (c.var_error - c.cov1)
    denominator = common + (readers - 1) * cov23
    return 2 * denominator / readers, _ddf(denominator, common - cov23, readers - 1)


def _check_request(c: ORComponents, readers: int, cases: np.ndarray, alpha: float, design: str, groups: int):
    if not 0 < alpha < 0.5:
        raise UserError(f"alpha must be in (0, 0.5), got {alpha}")
    if design not in DESIGNS:
        raise UserError(f"design {design!r} is not one of {', '.join(DESIGNS)}")
    if readers < 2:
        raise UserError(f"{readers} reader(s): random-reader power needs at least 2 readers")
    fewest = int(np.min(cases))
    if fewest < 4:
        raise UserError(f"{fewest} case(s): an AUC needs at least 4 cases (2 positive, 2 negative)")
    if design == "crossed":
        if groups != 1:
            raise UserError(f"{groups} groups: groups are for the split-plot design")
        return
    if groups < 2:
        raise UserError(f"a split-plot needs 2 or more groups, got {groups}")
    if readers % groups or readers // groups < 2:
        raise UserError(f"split-plot with {groups} groups: {readers} readers do not make {groups} equal groups of "
                        "at least 2 readers")
    if min(c.positive_fraction, 1 - c.positive_fraction) * fewest / groups < 2 - 1e-9:
        raise UserError(f"split-plot with {groups} groups: {fewest} cases leave fewer than 2 cases per class "
                        f"(positive fraction {c.positive_fraction:.2f}) in a group")


def design_variance(components: ORComponents, test: str, readers: int, cases, design: str = "crossed",
                    groups: int = 1, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """(variance of the estimate, ddf) for r readers and c cases (a number or an array): the reader-averaged
    AUC ("versus-chance", "equivalence") or the difference of two arms ("difference").

    Split-plot: the estimate is the mean of G independent group estimates, each a crossed study of r/G readers and
    c/G cases, so its variance is V_crossed(r/G, c/G) / G; the ddf of the summed variance estimate is by
    Satterthwaite, (sum V_g)^2 / sum(V_g^2 / ddf_g) = G * ddf_g for equal groups.
    """
    if test not in TESTS:
        raise UserError(f"test {test!r} is not one of {', '.join(TESTS)}")
    cases = np.asarray(cases, dtype=float)
    _check_request(components, readers, cases, alpha, design, groups)
    crossed = _crossed_difference if test == "difference" else _crossed_single
    if design == "crossed":
        return crossed(components, readers, cases)
    variance, ddf = crossed(components, readers // groups, cases / groups)
    return variance / groups, groups * ddf


def f_test_power(effect: float, variance, ddf, alpha: float) -> np.ndarray:
    """P(noncentral F(1, ddf, effect^2 / variance) > F_crit(1, ddf)): the two-sided test's power; noncentral
    chi-square where the ddf is infinite."""
    noncentrality, ddf = np.broadcast_arrays(effect ** 2 / np.asarray(variance, float), np.asarray(ddf, float))
    finite = np.isfinite(ddf)
    power = np.asarray(stats.ncx2.sf(stats.chi2.isf(alpha, 1), 1, noncentrality), dtype=float)
    if finite.any():
        dfd = ddf[finite]
        power[finite] = stats.ncf.sf(stats.f.isf(alpha, 1, dfd), 1, dfd, noncentrality[finite])
    return power


def _check_effect(test: str, effect: float, true_auc: float) -> None:
    if test == "versus-chance" and not (0 < effect < 1 and effect != 0.5):
        raise UserError("an AUC of 0.5 is chance itself: the effect to detect is 0" if effect == 0.5
                        else f"AUC must be in (0, 1), got {effect}")
    if test == "difference" and not 0 < abs(effect) < 1:
        raise UserError(f"the AUC difference to detect must be non-zero and within (-1, 1), got {effect}")
    if test == "equivalence" and not 0 < effect < 0.5:
        raise UserError(f"the equivalence margin must be in (0, 0.5), got {effect}")
    if test == "equivalence" and not 0 < true_auc < 1:
        raise UserError(f"the true AUC must be in (0, 1), got {true_auc}")


def tost_power(margin: float, auc: float, variance, ddf, alpha: float) -> np.ndarray:
    se = np.sqrt(variance)
    critical = stats.t.isf(alpha, ddf)  # t with infinite df is the normal
    shift = auc - 0.5
    power = stats.t.cdf((margin - shift) / se - critical, ddf) + stats.t.cdf((margin + shift) / se - critical, ddf)
    return np.where(margin > critical * se, np.clip(power - 1, 0.0, 1.0), 0.0)


def power_versus_chance(components: ORComponents, readers: int, cases: int, auc: float, alpha: float = 0.05,
                        design: str = "crossed", groups: int = 1) -> float:
    """Power of the two-sided single-arm OR test of H0 AUC = 0.5 when the arm's true AUC is ``auc``.

    Crossed: D = var_r + Var' + (r-1) Cov2', E[MS_R] = var_r + Var' - Cov2' (primes: scaled to c cases),
    noncentrality r (auc - 0.5)^2 / D, ddf = D^2 / (E[MS_R]^2 / (r-1)) (Hillis 2007; HOB 2011's scaling).
    """
    return float(power_function("versus-chance", auc)(components, readers, cases, alpha, design, groups))


def power_difference(components: ORComponents, readers: int, cases: int, delta: float, alpha: float = 0.05,
                     design: str = "crossed", groups: int = 1) -> float:
    """Power of the OR test of equal AUCs in two arms (same readers, same cases) when they differ by ``delta``.

    Crossed (HOB 2011): D = var_tr + Var' - Cov1' + (r-1) max(Cov2' - Cov3', 0), E[MS_TR] = var_tr + Var' - Cov1'
    - max(Cov2' - Cov3', 0), noncentrality r delta^2 / (2 D), ddf = D^2 / (E[MS_TR]^2 / (r-1)).
    """
    return float(power_function("difference", delta)(components, readers, cases, alpha, design, groups))


def power_equivalence(components: ORComponents, readers: int, cases: int, margin: float, auc: float = 0.5,
                      alpha: float = 0.05, design: str = "crossed", groups: int = 1) -> float:
    """Power to show that readers are within ``margin`` AUC of chance when their true AUC is ``auc``.

    Two one-sided tests (TOST), each at level alpha, of H0 |AUC - 0.5| >= margin, with SE = sqrt(D / r) and the
    ddf of the test against chance. Shifted central-t approximation: the estimate is auc + SE * T, T ~ t(ddf),
    with SE at its expected value, so power = P(|estimate - 0.5| < margin - t_crit SE)
    = F_t((margin - d)/SE - t_crit) + F_t((margin + d)/SE - t_crit) - 1, d = auc - 0.5, and 0 when that region
    is empty (margin <= t_crit SE).
    """
    return float(power_function("equivalence", margin, auc)(components, readers, cases, alpha, design, groups))


def power_function(test: str, effect: float, true_auc: float = 0.5) -> Callable[..., np.ndarray]:
    """power(components, readers, cases, alpha, design, groups) for one question, vectorised over cases; effect is
    the AUC (versus-chance), the difference (difference) or the margin (equivalence, true AUC ``true_auc``)."""
    if test not in TESTS:
        raise UserError(f"test {test!r} is not one of {', '.join(TESTS)}")
    _check_effect(test, effect, true_auc)

    def power(components, readers, cases, alpha=0.05, design="crossed", groups=1):
        variance, ddf = design_variance(components, test, readers, cases, design, groups, alpha)
        if test == "equivalence":
            return tost_power(effect, true_auc, variance, ddf, alpha)
        return f_test_power(effect - 0.5 if test == "versus-chance" else effect, variance, ddf, alpha)

    return power


@dataclass(frozen=True)
class SampleSizeGrid:
    power: list[dict]  # {"readers", "cases", "power"} over readers x cases
    needed: list[dict]  # {"readers", "cases"}: the fewest cases reaching the target, None within max_cases


def default_readers(design: str = "crossed", groups: int = 1) -> tuple[int, ...]:
    """3..20, or for a split-plot the multiples of G with at least 2 readers per group up to 20."""
    if design == "split-plot":
        return tuple(r for r in range(2 * groups, max(21, 2 * groups + 1)) if r % groups == 0)
    return DEFAULT_READERS


def sample_size_grid(components: ORComponents, test: str, effect: float, readers: Sequence[int] | None = None,
                     cases: Sequence[int] = DEFAULT_CASES, target: float = 0.8, design: str = "crossed",
                     groups: int = 1, alpha: float = 0.05, true_auc: float = 0.5,
                     max_cases: int = MAX_CASES) -> SampleSizeGrid:
    """Power over readers x cases, and per readers count the fewest cases (up to ``max_cases``; multiples of G
    for a split-plot) that reach ``target``.

    Every case count is tried rather than bisecting: power need not rise with cases. With few readers and a large
    reader variance the Hillis ddf falls towards r - 1 as cases grow, and the F test's critical value rises
    faster than the noncentrality, so power can peak and then fall.
    """
    power_of = power_function(test, effect, true_auc)
    if not alpha < target < 1:
        raise UserError(f"target power must be in (alpha = {alpha}, 1), got {target}")
    readers = tuple(default_readers(design, groups) if readers is None else readers)
    if not readers or not cases:
        raise UserError("give at least one readers count and one cases count")
    options = dict(alpha=alpha, design=design, groups=groups)
    table = [{"readers": r, "cases": int(c), "power": float(p)}
             for r in readers for c, p in zip(cases, power_of(components, r, np.asarray(cases), **options))]
    step = groups if design == "split-plot" else 1
    rarer = min(components.positive_fraction, 1 - components.positive_fraction)
    fewest = step * max(math.ceil(2 / rarer - 1e-9), math.ceil(4 / step))  # 2 of the rarer class per group
    search = np.arange(fewest, max_cases + 1, step)
    needed, best = [], []
    for r in readers:
        power = power_of(components, r, search, **options) if search.size else np.zeros(1)
        reached = np.flatnonzero(power >= target)
        needed.append({"readers": r, "cases": int(search[reached[0]]) if reached.size else None})
        best.append((float(power.max()), r, int(search[power.argmax()]) if search.size else fewest))
    if all(row["cases"] is None for row in needed):
        top, r, c = max(best)
        raise UserError(f"impossible target: power {target} is not reached with up to {max(readers)} readers and "
                        f"{max_cases} cases; the best reachable is {top:.3f} ({r} readers, {c} cases)")
    return SampleSizeGrid(table, needed)


def power_reached(se: float | None, df: float | None, auc: float = 0.6, margin: float = 0.1,
                  alpha: float = 0.05) -> dict | None:
    """The power a running study has reached, from the SE and df its analysis gives now (any design):
    to detect a true AUC of ``auc`` against chance, and to show readers within ``margin`` of chance when they
    are at chance (TOST). None while the SE is undefined."""
    if se is None or not se > 0:
        return None
    ddf = np.inf if df is None else df
    return {"auc": auc, "margin": margin, "alpha": alpha,
            "versus_chance": float(f_test_power(auc - 0.5, se ** 2, ddf, alpha)),
            "equivalence": float(tost_power(margin, 0.5, se ** 2, ddf, alpha))}
