"""A demo catalog of community services (fictional organisations, realistic offers)."""

# code, name, synonyms (what people type when they look for it)
TAXONOMY = [
    ("transportation", "Transportation", ["transport", "rides", "ride", "driver", "bus", "taxi", "travel"]),
    ("food", "Food", ["meals", "groceries", "pantry", "nutrition", "hunger"]),
    ("housing", "Housing", ["shelter", "rent", "homeless", "accommodation"]),
    ("home-health", "Home health", ["home care", "nursing", "home visits"]),
    ("behavioural-health", "Behavioural health", ["mental health", "counselling", "behavioral", "therapy"]),
    ("financial-aid", "Financial aid", ["money", "benefits", "bills", "utilities"]),
    ("caregiver-support", "Caregiver support", ["respite", "carer", "family support"]),
    ("language", "Language and interpretation", ["interpreter", "translation", "translator"]),
    ("medical-equipment", "Medical equipment", ["wheelchair", "walker", "mobility aids", "supplies"]),
    ("social-connection", "Social connection", ["loneliness", "isolation", "companionship", "befriending"]),
    ("medication-assistance", "Medication assistance", ["prescriptions", "pharmacy", "medicines"]),
]

# organisation, [(service name, categories, description, languages, free, area, response days)]
CATALOG = [
    (
        "Riverside Area Agency on Aging",
        "Help for older adults to stay safely at home.",
        [
            (
                "Senior Ride Connect",
                ["transportation"],
                "Door-to-door rides to medical appointments for adults 60+, booked 48 hours ahead.",
                ["en", "es"],
                True,
                "Riverside County",
                2,
            ),
            (
                "Meals on Wheels Riverside",
                ["food"],
                "Hot midday meals delivered weekdays with a wellness check; frozen weekend packs.",
                ["en", "es", "vi"],
                True,
                "Riverside County",
                3,
            ),
            (
                "Caregiver Respite Program",
                ["caregiver-support"],
                "Up to 8 hours a week of in-home respite for family caregivers.",
                ["en"],
                True,
                "Riverside County",
                5,
            ),
            (
                "Friendly Caller",
                ["social-connection"],
                "Volunteers call isolated older adults three times a week.",
                ["en", "es"],
                True,
                "Riverside County",
                3,
            ),
        ],
    ),
    (
        "Harbor Community Food Bank",
        "Emergency and ongoing food assistance.",
        [
            (
                "Emergency Food Pantry",
                ["food"],
                "Three days of groceries, no appointment needed; ID not required.",
                ["en", "es", "zh"],
                True,
                "Harbor City",
                1,
            ),
            (
                "Medically Tailored Groceries",
                ["food"],
                "Diabetes- and heart-friendly groceries with a dietitian's review, weekly pickup.",
                ["en", "es"],
                True,
                "Harbor City",
                4,
            ),
            (
                "SNAP Enrollment Help",
                ["financial-aid", "food"],
                "Help applying for SNAP benefits by phone or in person.",
                ["en", "es", "vi"],
                True,
                "Harbor City",
                3,
            ),
        ],
    ),
    (
        "Metro Paratransit Authority",
        "Public paratransit.",
        [
            (
                "Paratransit Eligibility and Rides",
                ["transportation"],
                "Shared-ride paratransit for people who cannot use fixed-route buses; eligibility interview required.",
                ["en", "es"],
                False,
                "Metro area",
                10,
            ),
        ],
    ),
    (
        "Good Neighbor Housing Alliance",
        "Housing stability and repairs.",
        [
            (
                "Home Safety Modifications",
                ["housing", "medical-equipment"],
                "Grab bars, ramps, railings and fall-risk checks for homeowners and renters.",
                ["en"],
                True,
                "Riverside County",
                7,
            ),
            (
                "Rental Assistance",
                ["housing", "financial-aid"],
                "One-time rent and utility assistance to prevent eviction.",
                ["en", "es"],
                True,
                "Riverside County",
                5,
            ),
            (
                "Emergency Shelter Referral Line",
                ["housing"],
                "Same-day shelter placement for people without a safe place to stay.",
                ["en", "es"],
                True,
                "Metro area",
                1,
            ),
        ],
    ),
    (
        "Lakeside Home Health Services",
        "Skilled nursing and therapy at home.",
        [
            (
                "Skilled Nursing Visits",
                ["home-health"],
                "Wound care, medication teaching and post-surgical checks at home.",
                ["en", "es"],
                False,
                "Lakeside and Riverside",
                2,
            ),
            (
                "Home Physical Therapy",
                ["home-health"],
                "Post-operative and fall-prevention physical therapy at home.",
                ["en"],
                False,
                "Lakeside and Riverside",
                3,
            ),
        ],
    ),
    (
        "Community Counseling Collective",
        "Sliding-scale mental health care.",
        [
            (
                "Counseling for Older Adults",
                ["behavioural-health"],
                "Short-term counseling for depression, grief and anxiety; home visits available.",
                ["en", "es"],
                False,
                "Metro area",
                7,
            ),
            (
                "Substance Use Recovery Group",
                ["behavioural-health"],
                "Weekly peer-led recovery groups and linkage to treatment.",
                ["en"],
                True,
                "Metro area",
                5,
            ),
        ],
    ),
    (
        "Unidos Language Access",
        "Interpretation and translation.",
        [
            (
                "Medical Interpreter Scheduling",
                ["language"],
                "Phone, video and in-person interpreters for appointments in 40 languages.",
                ["es", "vi", "zh", "ar", "ru"],
                True,
                "Statewide",
                2,
            ),
        ],
    ),
    (
        "Open Hands Medical Equipment Loan",
        "Free loans of durable medical equipment.",
        [
            (
                "Equipment Loan Closet",
                ["medical-equipment"],
                "Walkers, shower chairs, wheelchairs and hospital beds on free loan.",
                ["en", "es"],
                True,
                "Harbor City",
                2,
            ),
        ],
    ),
    (
        "Community Health Pharmacy Program",
        "Help affording and managing medications.",
        [
            (
                "Medication Assistance and Blister Packs",
                ["medication-assistance", "financial-aid"],
                "Help enrolling in patient-assistance programs; free weekly blister packing.",
                ["en", "es"],
                True,
                "Metro area",
                3,
            ),
        ],
    ),
    (
        "Family Caregiver Alliance of the Valley",
        "Support for unpaid family caregivers.",
        [
            (
                "Caregiver Training and Support Group",
                ["caregiver-support"],
                "Monthly support group and hands-on training in safe transfers.",
                ["en", "es"],
                True,
                "Valley region",
                7,
            ),
        ],
    ),
    (
        "Sunset Adult Day Center",
        "Day programs for adults who should not be alone.",
        [
            (
                "Adult Day Program",
                ["caregiver-support", "social-connection"],
                "Supervised day program with meals, activities and nursing oversight, weekdays 8-5.",
                ["en"],
                False,
                "Lakeside",
                7,
            ),
        ],
    ),
]

# service name, capacity, note (the catalog search shows them; a referral to a full
# service is confirmed before it is sent)
CAPACITY = [
    ("Rental Assistance", "full", "funds for this quarter are spent; new applications from 1 January"),
    ("Caregiver Respite Program", "waitlist", "about 3 weeks"),
    ("Meals on Wheels Riverside", "available", ""),
    ("Emergency Food Pantry", "available", ""),
]
