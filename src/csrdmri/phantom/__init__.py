"""Synthetic HCP-like phantom cohort built from the MNI152 templates that nilearn ships."""

from csrdmri.phantom.cohort import generate_cohort, generate_subject
from csrdmri.phantom.params import PhantomParams

__all__ = ["PhantomParams", "generate_cohort", "generate_subject"]
