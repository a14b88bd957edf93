"""The service catalogue (from the policy documents) and what each provider kind offers."""

# Keyed by the vocabulary's codes; a test checks that every code has a name and no more.
SERVICES: dict[str, str] = {
    "meals": "助餐",
    "cleaning": "助洁",
    "bathing": "助浴",
    "medical_escort": "助医",
    "mobility": "助行",
    "daily_care": "生活照料",
    "rehab_nursing": "康复护理",
    "companionship": "精神慰藉",
    "emergency_rescue": "紧急救援",
    "legal_aid": "法律维权",
    "home_adaptation": "适老化改造",
    "assistive_rental": "辅具租赁",
    "caregiver_training": "护老者培训",
    "visit": "巡访上门",
}

KIND_SERVICES: dict[str, tuple[str, ...]] = {
    "service_station": (
        "meals",
        "cleaning",
        "bathing",
        "daily_care",
        "companionship",
        "emergency_rescue",
        "assistive_rental",
        "legal_aid",
        "caregiver_training",
        "visit",
    ),
    "caregiver": ("daily_care", "bathing", "companionship", "rehab_nursing", "mobility", "cleaning"),
    "meal_kitchen": ("meals",),
    "clinic": ("medical_escort", "rehab_nursing", "emergency_rescue"),
    "ambulance": ("emergency_rescue", "medical_escort"),
}
