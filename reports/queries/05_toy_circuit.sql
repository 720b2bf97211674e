-- section: Toy model circuit
-- title: Previous-token, prefix-matching and first-token score of every head
-- chart: heatmap x=head y=layer value=score facet=measure
-- note: Attention-pattern scores on held-out <|bos|> A A sequences: previous_token is the mean attention from position p to p-1, prefix_matching the mean attention from a second-copy token to the token after its earlier occurrence, first_token the mean attention from a second-copy token to the first word (train_toy's second job). The canonical induction circuit is a layer-0 previous-token head feeding a layer-1 induction head.
select model, measure, layer, head, round(score, 4) as score
from (
  select model, layer, head, 'previous_token' as measure, previous_token as score from toy_heads
  union all
  select model, layer, head, 'prefix_matching' as measure, prefix_matching as score from toy_heads
  union all
  select model, layer, head, 'first_token' as measure, first_token as score from toy_heads
)
order by model, measure, layer, head
