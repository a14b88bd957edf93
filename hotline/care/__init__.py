"""The service loop: the catalogue, entitlements, work orders from call to settlement,
follow-up calls, complaints, referrals, provider ratings, wellbeing campaigns, the care
advisor and the civil-affairs reports (docs/service-loop.md)."""
