"""Solutions of notebook 06's exercises (fine-tuning and evaluation)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def knn_predict(train_v, train_y, test_v, k, temperature):
    similarity = F.normalize(test_v, dim=1) @ F.normalize(train_v, dim=1).T  # (M, N) cosine similarities
    top_similarity, top_index = similarity.topk(k, dim=1)  # (M, k) the k nearest training points
    weights = torch.exp(top_similarity / temperature)  # (M, k)
    votes = torch.zeros(len(test_v), int(train_y.max()) + 1)  # (M, C)
    votes.scatter_add_(1, train_y[top_index], weights)  # add each neighbour's weight to its label's column
    return votes.argmax(dim=1)  # (M,)


def linear_probe_frozen(encoder, x_train, y_train, x_test, y_test, steps=300):
    encoder.eval()  # BatchNorm uses its running statistics and does not update them
    with torch.no_grad():  # no graph through the encoder: it cannot be trained by accident
        v_train, v_test = encoder(x_train), encoder(x_test)  # (N, d), (M, d)
    classifier = nn.Linear(v_train.shape[1], int(y_train.max()) + 1)
    optimizer = torch.optim.Adam(classifier.parameters(), lr=1e-2)  # only the classifier's parameters
    for _ in range(steps):
        loss = F.cross_entropy(classifier(v_train), y_train)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return (classifier(v_test).argmax(dim=1) == y_test).float().mean().item()


def make_finetune_optimizer(encoder, classifier, lr_head, lr_encoder):
    return torch.optim.Adam([
        {"params": encoder.parameters(), "lr": lr_encoder},  # pre-trained: small steps keep what it learned
        {"params": classifier.parameters(), "lr": lr_head},  # new: starts from random weights, needs larger steps
    ])
