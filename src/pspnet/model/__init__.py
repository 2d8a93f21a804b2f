"""The network: dilated ResNet backbone, pyramid pooling module, heads."""
