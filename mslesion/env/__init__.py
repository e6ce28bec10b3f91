"""Where the toolkit runs: platform set-up (Kaggle/Colab/local), working folders, quiet imports."""
