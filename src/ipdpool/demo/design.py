"""Design of the synthetic demo trials: true effects, instruments and trial facts.

Everything the generator draws from is declared here as data, so that
`ground_truth.yaml` and `resources/demo/README.md` can state it exactly.
Trial sizes, arms and employment rates follow the published trials named in
`TRIALS`; everything else (instruments per trial, centring, attrition, codes)
is invented to be plausible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OUTCOMES: tuple[str, ...] = (
    "self_esteem",
    "empowerment",
    "quality_of_life",
    "depression",
    "negative_symptoms",
    "positive_symptoms",
    "anxiety",
    "functioning",
)

# True effect of having worked during follow-up, as a standardized mean
# difference (latent follow-up score in units of the within-study baseline SD).
# The three headline values are the published Wallstroem et al. (2021) SMDs;
# the other five are small, invented effects.
TRUE_EMPLOYED_SMD: dict[str, float] = {
    "self_esteem": 0.15,
    "empowerment": 0.10,
    "quality_of_life": 0.34,
    "depression": -0.10,
    "negative_symptoms": -0.41,
    "positive_symptoms": -0.08,
    "anxiety": -0.05,
    "functioning": 0.59,
}
# IPS versus usual services given employment, and the IPS x work interaction.
TRUE_IPS_DIRECT_SMD = 0.0
TRUE_IPS_X_EMPLOYED_SMD = 0.0

# Follow-up latent score = study intercept + STABILITY * baseline
#                          + employed effect + noise(SD = RESIDUAL_SD).
STABILITY: dict[str, float] = {
    "self_esteem": 0.60,
    "empowerment": 0.55,
    "quality_of_life": 0.50,
    "depression": 0.50,
    "negative_symptoms": 0.65,
    "positive_symptoms": 0.55,
    "anxiety": 0.50,
    "functioning": 0.60,
}
RESIDUAL_SD = 0.80

# Between-study spread of baseline levels and of follow-up intercepts (latent SD units).
BASELINE_LEVEL_SD = 0.30
FOLLOWUP_INTERCEPT_SD = 0.15

# Correlation of the eight latent baseline scores within a study (order of OUTCOMES).
# Built from two factors (wellbeing and symptom severity) plus unique parts, so it is
# positive definite; signs follow the constructs (more depression, less self-esteem).
FACTOR_LOADINGS: dict[str, tuple[float, float]] = {
    "self_esteem": (0.70, -0.10),
    "empowerment": (0.60, -0.05),
    "quality_of_life": (0.70, -0.20),
    "depression": (-0.60, 0.30),
    "negative_symptoms": (-0.20, 0.65),
    "positive_symptoms": (-0.10, 0.55),
    "anxiety": (-0.50, 0.30),
    "functioning": (0.30, -0.60),
}

# Employment: logit P(employed) = study-arm intercept + sum(coef * baseline latent).
# The intercepts are set so that each arm's share employed equals its target.
EMPLOYMENT_BASELINE_COEF: dict[str, float] = {"functioning": 0.60, "negative_symptoms": -0.40}
# Follow-up assessment: logit P(assessed) = study intercept + ARM + SEVERITY * negative symptoms.
ATTRITION_IPS_LOGODDS = 0.50
ATTRITION_SEVERITY_LOGODDS = -0.60


@dataclass(frozen=True)
class Instrument:
    """How a latent construct score becomes an instrument score.

    score = centre + direction * points_per_sd * latent, rounded to `step` and
    clipped to [low, high]. direction -1 means the instrument runs opposite to
    the construct (higher score = less of it).
    """

    name: str
    construct: str
    low: float
    high: float
    step: float
    centre: float
    points_per_sd: float
    direction: int = 1
    n_items: int = 0
    item_low: int = 0
    item_high: int = 0
    label: str = ""

    def exact(self, latent):
        return self.centre + self.direction * self.points_per_sd * latent

    def score(self, latent):
        import numpy as np

        value = np.round(self.exact(latent) / self.step) * self.step
        return np.clip(value, self.low, self.high)


INSTRUMENTS: dict[str, Instrument] = {
    i.name: i
    for i in [
        Instrument("RSES", "self_esteem", 10, 40, 1, 27, 5, label="Rosenberg Self-Esteem Scale, total 10-40"),
        Instrument(
            "RSES_SE_items",
            "self_esteem",
            10,
            40,
            1,
            23,
            5,
            direction=-1,
            n_items=10,
            item_low=1,
            item_high=4,
            label="Rosenberg Self-Esteem Scale, Swedish version, 10 items 1-4 keyed so that higher = LOWER self-esteem",
        ),
        Instrument(
            "MDES", "empowerment", 28, 112, 1, 78, 9, label="Making Decisions Empowerment Scale (Rogers), total 28-112"
        ),
        Instrument(
            "MANSA",
            "quality_of_life",
            1,
            7,
            0.01,
            4.3,
            0.8,
            label="Manchester Short Assessment of QoL, mean of 12 items 1-7",
        ),
        Instrument(
            "QOLI",
            "quality_of_life",
            1,
            7,
            0.1,
            4.4,
            0.9,
            label="Lehman Quality of Life Interview, general life satisfaction 1-7",
        ),
        Instrument(
            "WHOQOL_PSY", "quality_of_life", 4, 20, 0.01, 12.5, 2.5, label="WHOQOL-BREF psychological domain, 4-20"
        ),
        Instrument("HAMD", "depression", 0, 52, 1, 12, 6, label="Hamilton Depression Rating Scale, 17 items, 0-52"),
        Instrument("BDI2", "depression", 0, 63, 1, 18, 9, label="Beck Depression Inventory II, 0-63"),
        Instrument("MADRS", "depression", 0, 60, 1, 16, 7, label="Montgomery-Asberg Depression Rating Scale, 0-60"),
        Instrument("PANSS_N", "negative_symptoms", 7, 49, 1, 18, 5, label="PANSS negative subscale, 7-49"),
        Instrument("SANS", "negative_symptoms", 0, 25, 1, 11, 4, label="SANS sum of five global ratings, 0-25"),
        Instrument(
            "BPRS_N",
            "negative_symptoms",
            3,
            21,
            1,
            8,
            3,
            n_items=3,
            item_low=1,
            item_high=7,
            label=(
                "BPRS negative items (blunted affect, emotional withdrawal, motor retardation), 3 items 1-7, sum 3-21"
            ),
        ),
        Instrument("PANSS_P", "positive_symptoms", 7, 49, 1, 15, 5, label="PANSS positive subscale, 7-49"),
        Instrument("SAPS", "positive_symptoms", 0, 20, 1, 8, 3.5, label="SAPS sum of four global ratings, 0-20"),
        Instrument(
            "BPRS_P",
            "positive_symptoms",
            4,
            28,
            1,
            11,
            4,
            n_items=4,
            item_low=1,
            item_high=7,
            label=(
                "BPRS positive items (grandiosity, suspiciousness, hallucinations, unusual thought content), "
                "4 items 1-7, sum 4-28"
            ),
        ),
        Instrument("HADS_A", "anxiety", 0, 21, 1, 8, 4, label="HADS anxiety subscale, 0-21"),
        Instrument("BAI", "anxiety", 0, 63, 1, 15, 8, label="Beck Anxiety Inventory, 0-63"),
        Instrument("GAF", "functioning", 1, 100, 1, 45, 10, label="Global Assessment of Functioning (DSM-IV), 1-100"),
        Instrument("GAF_F", "functioning", 1, 100, 1, 48, 11, label="GAF functioning subscale (split GAF), 1-100"),
        Instrument(
            "WHODAS12",
            "functioning",
            12,
            60,
            1,
            28,
            8,
            direction=-1,
            label="WHODAS 2.0 12-item, simple scoring 12-60, higher = MORE disability (opposite to functioning)",
        ),
    ]
}


@dataclass(frozen=True)
class Trial:
    study: str
    modelled_on: str
    sites: tuple[str, ...]
    arms: dict[str, int]  # trial's own arm label -> number randomized
    ips_arms: tuple[str, ...]  # arm labels that count as IPS by default
    employment_target: dict[str, float]  # arm label -> share employed during 18 months
    assessed_target: float  # share with an 18-month assessment
    instruments: dict[str, str]  # outcome -> instrument name
    followup_months_nominal: tuple[int, ...]  # scheduled visits after baseline
    notes: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return sum(self.arms.values())


TRIALS: dict[str, Trial] = {
    t.study: t
    for t in [
        Trial(
            study="EU6",
            modelled_on="EQOLISE (Burns et al. 2007, Lancet): six European centres, 18-month follow-up",
            sites=("London", "Ulm", "Rimini", "Zurich", "Groningen", "Sofia"),
            arms={"IPS": 156, "Vocational service": 156},
            ips_arms=("IPS",),
            employment_target={"IPS": 0.545, "Vocational service": 0.276},
            assessed_target=0.86,
            instruments={
                "quality_of_life": "MANSA",
                "negative_symptoms": "PANSS_N",
                "positive_symptoms": "PANSS_P",
                "functioning": "GAF",
            },
            followup_months_nominal=(18,),
        ),
        Trial(
            study="DK",
            modelled_on="Danish IPS trial (Christensen et al. 2019, JAMA Psychiatry): three cities, three arms",
            sites=("København", "Aarhus", "Odense"),
            arms={"IPS": 243, "IPSE": 238, "Sædvanlig indsats": 239},
            ips_arms=("IPS", "IPSE"),
            employment_target={"IPS": 0.60, "IPSE": 0.60, "Sædvanlig indsats": 0.47},
            assessed_target=0.78,
            instruments={
                "self_esteem": "RSES",
                "quality_of_life": "WHOQOL_PSY",
                "negative_symptoms": "SANS",
                "positive_symptoms": "SAPS",
                "functioning": "GAF_F",
            },
            followup_months_nominal=(18,),
        ),
        Trial(
            study="SE",
            modelled_on="Swedish IPS trial (Bejerholm et al. 2015): one site, 73% assessed at 18 months",
            sites=("Malmö",),
            arms={"IPS": 60, "Traditionell arbetsrehabilitering": 60},
            ips_arms=("IPS",),
            employment_target={"IPS": 0.46, "Traditionell arbetsrehabilitering": 0.11},
            assessed_target=0.73,
            instruments={
                "self_esteem": "RSES_SE_items",
                "empowerment": "MDES",
                "quality_of_life": "MANSA",
                "depression": "MADRS",
                "anxiety": "HADS_A",
                "functioning": "GAF",
            },
            followup_months_nominal=(6, 12, 18),
        ),
        Trial(
            study="NL",
            modelled_on="Dutch IPS trial (Michon et al. 2014): several sites, assessments beyond 18 months",
            sites=("Amsterdam", "Rotterdam", "Utrecht", "Groningen"),
            arms={"IPS": 71, "Traditionele arbeidsrehabilitatie": 80},
            ips_arms=("IPS",),
            employment_target={"IPS": 0.44, "Traditionele arbeidsrehabilitatie": 0.25},
            assessed_target=0.80,
            instruments={
                "self_esteem": "RSES",
                "empowerment": "MDES",
                "depression": "BDI2",
                "negative_symptoms": "PANSS_N",
                "positive_symptoms": "PANSS_P",
                "functioning": "WHODAS12",
            },
            followup_months_nominal=(6, 12, 18, 24, 30),
        ),
        Trial(
            study="US",
            modelled_on="a US IPS trial with visits every 6 months to 24 months (like Mueser et al. 2004, Hartford)",
            sites=("Hartford",),
            arms={"IPS": 68, "PSR": 69, "BVR": 67},
            ips_arms=("IPS",),
            employment_target={"IPS": 0.74, "PSR": 0.22, "BVR": 0.22},
            assessed_target=0.88,
            instruments={
                "self_esteem": "RSES",
                "quality_of_life": "QOLI",
                "depression": "HAMD",
                "negative_symptoms": "BPRS_N",
                "positive_symptoms": "BPRS_P",
                "anxiety": "BAI",
                "functioning": "GAF",
            },
            followup_months_nominal=(6, 12, 18, 24),
        ),
    ]
}

DEFAULT_SEED = 20210901
