"""The behaviour model a collar runs when no model blob loads: VeDBA thresholds (status flags it)."""

from collar_firmware import codec


class ThresholdModel:
    """Fallback behaviour model: the class of a window from its mean VeDBA and two settings."""

    classes = codec.BEHAVIOURS
    version = 0

    def __init__(self, settings):
        self.settings = settings

    def predict_vedba(self, vedba_mg):
        """Return the class index for a window's mean VeDBA in mg."""
        s = self.settings
        if vedba_mg < s["still_vedba_mg"] * 2:
            return 0
        if vedba_mg < 120:
            return 1
        if vedba_mg < s["run_vedba_mg"]:
            return 2
        return 3
