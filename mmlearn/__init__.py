"""mmlearn: multimodal representation learning and fusion, one clear reference
implementation per technique of the survey (arXiv 2506.20494), for teaching.

Subpackages mirror the survey: ``data``, ``fusion``, ``models``, ``train``,
``viz``, ``widgets`` (and, as they land, ``representation``, ``alignment``,
``balance``, ``robustness``, ``evaluation``, ``interactions``, ``efficiency``).
"""

__version__ = "0.1.0"
