"""reid_core.model: OmniReID (CLIP with MER LoRA, SDM, masked fusion, BNNeck) and its builder."""

from reid_core.model.omnireid import OmniReID, ReIDOutput, build_model

__all__ = ["OmniReID", "ReIDOutput", "build_model"]
