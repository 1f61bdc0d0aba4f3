"""Canister kinds: profiles (canisters/<kind>/), Candid call templates and one driver per protocol family."""
